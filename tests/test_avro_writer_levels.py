"""``Writer.lob_levels`` and ``lob_sided_levels`` (the C Avro writer) encode a book message's levels as the record path would, or
declines and leaves the outputs as they were, so that the record path makes (or refuses) them.

The record path is the reference: a copy of the template per level (``records_build._python_levels``),
then the writer over the record dict.  Skipped, with the reason shown, where the extension is not
built; on CI (``CI`` set) the build itself is checked (``tests/test_avro_writer_c.py``).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bench.pure import encoders
from l3_atom.stream_processing import records_build
from l3_atom.stream_processing.standardiser import NumberText, Output, exact
from l3_atom.topics import LOB
from tests.compiled import compiled
from tests.test_levels_c import KEY, TEMPLATE, level, side_of, sided_level
from tests.test_levels_c import SIDES as SIDE_NAMES

_avro_writer_c, needs_c = compiled("l3_atom.avro._avro_writer_c", "the C Avro writer")
SIDES = ["bid", "ask", "buy", ""]


def writer() -> Any:
    return encoders()[LOB].encode


def by_records(levels: list, side: str | None) -> tuple[str, Any]:
    """The record path's encoded values, or what it raises (building the records or encoding them).

    ``side`` None: the levels are sided, ``[side name, price, size]``.
    """
    encode = writer()
    outputs: list[Output] = []
    try:
        if side is None:
            records_build._python_sided_levels(outputs, TEMPLATE, KEY, side_of, levels)
        else:
            records_build._python_levels(outputs, TEMPLATE, KEY, side, levels, exact, exact)
        return "encoded", [Output(LOB, KEY, encode(out.record)) for out in outputs]
    except Exception as exc:  # noqa: BLE001 - the point is comparing whatever either raises
        return "raised", type(exc)


@needs_c
@settings(max_examples=600, deadline=None)
@given(st.lists(level, max_size=6), st.sampled_from(SIDES))
def test_levels_are_encoded_as_the_record_path_encodes_them_or_left_to_it(levels: list, side: str) -> None:
    before = [Output(LOB, KEY, b"earlier")]
    outputs = list(before)
    if writer().lob_levels(outputs, Output, LOB, KEY, TEMPLATE, side, levels):
        assert outputs[:1] == before
        assert ("encoded", outputs[1:]) == by_records(levels, side)
        assert all(type(out) is Output for out in outputs)
    else:
        assert outputs == before


@needs_c
@settings(max_examples=600, deadline=None)
@given(st.lists(sided_level, max_size=6))
def test_sided_levels_are_encoded_as_the_record_path_encodes_them_or_left_to_it(levels: list) -> None:
    outputs: list[Output] = []
    if writer().lob_sided_levels(outputs, Output, LOB, KEY, TEMPLATE, SIDE_NAMES, levels):
        assert ("encoded", outputs) == by_records(levels, None)
    else:
        assert outputs == []


@needs_c
def test_sided_levels_take_their_side_from_the_venues_names() -> None:
    levels = [["sell", "1.10", "2"], ("buy", "3", "0.00")]
    outputs: list[Output] = []
    assert writer().lob_sided_levels(outputs, Output, LOB, KEY, TEMPLATE, SIDE_NAMES, levels)
    assert outputs == by_records(levels, None)[1]
    # A name the venue's dict lacks is for its side function (and its error): left to the record path.
    assert not writer().lob_sided_levels(outputs, Output, LOB, KEY, TEMPLATE, SIDE_NAMES, [["hold", "1", "1"]])
    assert len(outputs) == 2


@needs_c
def test_plain_texts_and_finite_decimals_are_encoded_here() -> None:
    levels = [["30004.27000000", "0.00000001"], ("0", "-0"), [Decimal("1.50"), Decimal("2E+1")], ["007", "1.0", "x"]]
    outputs: list[Output] = []
    assert writer().lob_levels(outputs, Output, LOB, KEY, TEMPLATE, "ask", levels)
    assert outputs == by_records(levels, "ask")[1]


@needs_c
@pytest.mark.parametrize("levels", [
    [["1e-7", "1"]],                    # exponent: Decimal reads it, the record path judges it
    [["1", "0.0000000000000000001"]],   # more places than the schema's scale: the record path refuses it
    [["1" * 21, "1"]],                  # more digits than the schema's precision
    [[NumberText("1.5"), "1"]],         # not an exact str: exact() decides
    [[Decimal("NaN"), "1"]],
    [["1"]],                            # no size
    [{"0": "1", "1": "2"}],             # not a list or tuple
])
def test_what_the_record_path_must_judge_is_left_to_it(levels: list) -> None:
    outputs: list[Output] = []
    assert not writer().lob_levels(outputs, Output, LOB, KEY, TEMPLATE, "bid", [["1", "2"], *levels])
    assert outputs == []


@needs_c
def test_book_levels_gives_encoded_records_with_a_writer_and_dicts_without() -> None:
    shared = {"exchange": "binance", "symbol": "BTC.USDT", "key": KEY, "bids": [["1.5", "2"]], "asks": [["1.6", "3"]],
              "is_snapshot": True, "atom_timestamp": 1, "sequence": 9}
    as_dicts = records_build.book_levels(**shared)
    encoded = records_build.book_levels(**shared, writer=writer())
    assert [type(out.record) for out in as_dicts] == [dict, dict]
    assert encoded == [Output(LOB, KEY, writer()(out.record)) for out in as_dicts]
    # A checksum goes on the last record only: the record path places it.
    assert all(type(out.record) is dict for out in records_build.book_levels(**shared, checksum=5, writer=writer()))
