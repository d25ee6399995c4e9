"""The normalised symbol grammar."""

from __future__ import annotations

import pytest

from l3_atom.tokens import InstrumentType, Symbol, SymbolError


@pytest.mark.parametrize(
    ("name", "kind"),
    [
        ("BTC.USD", InstrumentType.SPOT),
        ("ETH.USDT-PERP", InstrumentType.PERPETUAL),
        ("BTC.USD-20251226", InstrumentType.FUTURE),
        ("BTC.USD-20251226-100000-C", InstrumentType.OPTION),
        ("ETH.USD-20251226-2500.5-P", InstrumentType.OPTION),
    ],
)
def test_round_trip(name: str, kind: InstrumentType) -> None:
    symbol = Symbol.parse(name)
    assert symbol.type is kind
    assert str(symbol) == name


@pytest.mark.parametrize("name", ["BTC-USD", "btc.usd", "BTC.USD-PERPETUAL", "BTC.USD-2025", "BTC."])
def test_rejects_names_outside_the_grammar(name: str) -> None:
    with pytest.raises(SymbolError, match="is not a normalised symbol"):
        Symbol.parse(name)
