"""Pure parts of reprocess and replay-archive: ``--from``/``--to`` parsing, archive files found and cut by hour."""

from __future__ import annotations

from pathlib import Path

import pytest

from l3_atom.errors import UserError
from l3_atom.local.archive import ArchiveFile, find_files, in_range
from l3_atom.time_range import iso, parse_time, time_range

MAY_1_NOON_MS = 1_714_564_800_000
US_PER_MS = 1000


@pytest.mark.parametrize(
    "text",
    ["2024-05-01T12:00:00Z", "2024-05-01T12:00:00+00:00", "2024-05-01T14:00:00+02:00", "2024-05-01 12:00",
     str(MAY_1_NOON_MS), " 1714564800000 "],
)
def test_times_in_every_accepted_form(text: str) -> None:
    assert parse_time("--from", text) == MAY_1_NOON_MS
    assert iso(MAY_1_NOON_MS) == "2024-05-01T12:00:00Z"


@pytest.mark.parametrize("text", ["yesterday", "12:00", "-5", "2024-13-01", ""])
def test_a_bad_time_names_the_option_and_the_accepted_forms(text: str) -> None:
    with pytest.raises(UserError, match=r"^--to .* is not a time: use ISO-8601 .* or milliseconds since the epoch$"):
        parse_time("--to", text)


def test_an_empty_range_is_refused() -> None:
    assert time_range(None, None) == (None, None)
    assert time_range("1000", "2000") == (1000, 2000)
    for start, end in (("2000", "1000"), ("1000", "1000")):
        with pytest.raises(UserError, match="is not before --to"):
            time_range(start, end)


def test_archive_files_are_found_by_hour_and_strays_are_noted(tmp_path: Path) -> None:
    day = tmp_path / "trades_l3" / "coinbase" / "BTC.USD" / "2024-05-01"
    day.mkdir(parents=True)
    for name in ("12.avro", "12-1.avro", "13.avro"):
        (day / name).write_bytes(b"")
    dead = tmp_path / "dead_letter" / "coinbase" / "2024-05-01"
    dead.mkdir(parents=True)
    (dead / "12.parquet").write_bytes(b"")
    (tmp_path / "stray.avro").write_bytes(b"")
    files, notes = find_files(tmp_path)
    noon_hour = MAY_1_NOON_MS // 3_600_000
    assert [(f.folder, f.hour - noon_hour, f.attempt, f.path.name) for f in files] == [
        (("dead_letter", "coinbase"), 0, 0, "12.parquet"),
        (("trades_l3", "coinbase", "BTC.USD"), 0, 0, "12.avro"),
        (("trades_l3", "coinbase", "BTC.USD"), 0, 1, "12-1.avro"),
        (("trades_l3", "coinbase", "BTC.USD"), 1, 0, "13.avro"),
    ]
    assert len(notes) == 1 and notes[0].startswith(f"{tmp_path / 'stray.avro'}: not a file runner.py local writes")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match="no Avro or Parquet files under"):
        find_files(empty)
    with pytest.raises(UserError, match="is not a folder"):
        find_files(tmp_path / "missing")


def test_files_outside_the_range_are_left_out_by_their_hour() -> None:
    hour = MAY_1_NOON_MS // 3_600_000
    file = ArchiveFile(("trades_l3", "coinbase", "BTC.USD"), hour, 0, Path("12.avro"))
    noon_us = MAY_1_NOON_MS * US_PER_MS
    one_hour_us = 3_600_000_000
    assert in_range(file, None, None)
    assert in_range(file, noon_us + one_hour_us - 1, None)
    assert not in_range(file, noon_us + one_hour_us, None)
    assert in_range(file, None, noon_us + 1)
    assert not in_range(file, None, noon_us)
