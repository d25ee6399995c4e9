"""``decode_exact`` and ``decode_number_texts`` (yapic.json): every JSON number's own digits, strings left as
sent, bad JSON named."""

from __future__ import annotations

from decimal import Decimal

import pytest

from l3_atom.stream_processing.standardiser import (
    NumberText,
    StandardiseError,
    decode_exact,
    decode_number_texts,
    exact,
)


def test_numbers_keep_their_digits_and_strings_stay_strings() -> None:
    frame = b'[0.00000100, 1.10, 3.0E+2, -0.0, 42, "2023-09-25T07:48:36.925533Z", {"p": "0.10"}]'
    decoded = decode_exact(frame)
    assert [str(v) for v in decoded[:4]] == ["0.00000100", "1.10", "3.0E+2", "-0.0"]
    assert all(type(v) is Decimal for v in decoded[:4])
    assert type(decoded[4]) is int
    assert decoded[5:] == ["2023-09-25T07:48:36.925533Z", {"p": "0.10"}]
    assert decode_exact(frame.decode()) == decoded


def test_number_texts_read_exactly_as_the_decimals_decode_exact_makes() -> None:
    frame = b'[0.00000100, 1.10, 3.0E+2, -0.0, 123456789012345678901234567890, 42, "1.5", {"p": "0.10"}]'
    texts, decimals = decode_number_texts(frame), decode_exact(frame)
    assert texts[:2] == ["0.00000100", "1.10"]
    assert all(type(v) is NumberText for v in texts[:5])
    # The same digits and exponent as decode_exact's Decimals (yapic writes 3.0E+2's text as "3.0e2").
    assert [exact(v).as_tuple() for v in texts[:5]] == [v.as_tuple() for v in decimals[:5]]
    # Integers stay ints; a JSON string stays a plain str, so a number never passes for one.
    assert type(texts[5]) is int
    assert type(texts[6]) is str
    assert texts[6:] == decimals[6:]


@pytest.mark.parametrize("decode", [decode_exact, decode_number_texts])
@pytest.mark.parametrize("frame", [b"[1,", b"", b"\xff", b'{"a" 1}'])
def test_malformed_json_is_a_standardise_error(decode, frame: bytes) -> None:
    with pytest.raises(StandardiseError, match="^malformed JSON: "):
        decode(frame)
