"""``decode_exact`` (yapic.json): every JSON number's own digits, strings left as sent, bad JSON named."""

from __future__ import annotations

from decimal import Decimal

import pytest

from l3_atom.stream_processing.standardiser import StandardiseError, decode_exact


def test_numbers_keep_their_digits_and_strings_stay_strings() -> None:
    frame = b'[0.00000100, 1.10, 3.0E+2, -0.0, 42, "2023-09-25T07:48:36.925533Z", {"p": "0.10"}]'
    decoded = decode_exact(frame)
    assert [str(v) for v in decoded[:4]] == ["0.00000100", "1.10", "3.0E+2", "-0.0"]
    assert all(type(v) is Decimal for v in decoded[:4])
    assert type(decoded[4]) is int
    assert decoded[5:] == ["2023-09-25T07:48:36.925533Z", {"p": "0.10"}]
    assert decode_exact(frame.decode()) == decoded


@pytest.mark.parametrize("frame", [b"[1,", b"", b"\xff", b'{"a" 1}'])
def test_malformed_json_is_a_standardise_error(frame: bytes) -> None:
    with pytest.raises(StandardiseError, match="^malformed JSON: "):
        decode_exact(frame)
