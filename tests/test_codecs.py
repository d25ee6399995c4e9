"""Confluent wire format with exact decimals."""

from __future__ import annotations

from decimal import Decimal

import fastavro
import pytest

from l3_atom.avro.codecs import AvroEncoder, decode_wire, parsed_schema

RECORD = {
    "exchange": "coinbase", "symbol": "BTC.USD", "trade_id": "1", "price": Decimal("30000.123456789012345678"),
    "size": Decimal("0.00000001"), "taker_side": "buy", "maker_order_id": None, "taker_order_id": "t",
    "sequence": None, "origin": None, "event_timestamp": 1, "atom_timestamp": 2,
}


def test_round_trip_is_exact() -> None:
    value = AvroEncoder("trades_l3", 7).encode(RECORD)
    assert value[:5] == b"\x00\x00\x00\x00\x07"
    decoded = decode_wire(value, {7: parsed_schema("trades_l3")})
    assert decoded == RECORD
    assert decoded["price"] == Decimal("30000.123456789012345678")


def test_the_encoder_buffer_is_reused_safely() -> None:
    encoder = AvroEncoder("trades_l3", 7)
    first = encoder.encode(RECORD)
    second = encoder.encode({**RECORD, "symbol": "ETH.USD"})
    assert decode_wire(first, {7: parsed_schema("trades_l3")})["symbol"] == "BTC.USD"
    assert decode_wire(second, {7: parsed_schema("trades_l3")})["symbol"] == "ETH.USD"


@pytest.mark.parametrize(
    "bad",
    [{"price": 1.5}, {"price": Decimal("1e-19")}, {"taker_side": "long"}, {"event_timestamp": "1"}],
)
def test_values_outside_the_schema_are_refused(bad: dict) -> None:
    with pytest.raises((ValueError, TypeError, fastavro.validation.ValidationError)):
        AvroEncoder("trades_l3", 7).encode({**RECORD, **bad})



def test_schemas_the_compiled_writer_refuses_are_written_by_fastavro(monkeypatch: pytest.MonkeyPatch) -> None:
    from l3_atom.avro import codecs

    compiled = AvroEncoder("trades_l3", 7).encode(RECORD)

    def refuse(schema: dict, prefix: bytes = b"") -> None:
        raise NotImplementedError("not compiled")

    monkeypatch.setattr(codecs, "compile_record_writer", refuse)
    encoder = AvroEncoder("trades_l3", 7)
    first, second = encoder.encode(RECORD), encoder.encode({**RECORD, "symbol": "ETH.USD"})
    assert first == compiled
    assert decode_wire(second, {7: parsed_schema("trades_l3")})["symbol"] == "ETH.USD"
