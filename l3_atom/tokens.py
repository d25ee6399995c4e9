"""Normalised instrument names: one grammar for every venue.

    BTC.USD                      spot
    BTC.USDT-PERP                perpetual swap
    BTC.USD-20251226             dated future (expiry date, UTC)
    BTC.USD-20251226-100000-C    option (expiry, strike, C/P)

Base and quote are upper-case asset codes (letters and digits).  Exchanges
each have their own spelling (``BTC-USD``, ``XBT/USD``, ``tBTCUSD``); every
``DataFeed`` maps its spelling to and from these names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import Enum

from l3_atom.errors import UserError

_ASSET = r"[A-Z0-9]+"
_GRAMMAR = re.compile(
    rf"^(?P<base>{_ASSET})\.(?P<quote>{_ASSET})"
    r"(?:-(?:(?P<perp>PERP)|(?P<expiry>\d{8})(?:-(?P<strike>\d+(?:\.\d+)?)-(?P<option>[CP]))?))?$"
)


class InstrumentType(str, Enum):
    SPOT = "spot"
    PERPETUAL = "perpetual"
    FUTURE = "future"
    OPTION = "option"


class SymbolError(UserError):
    """A name that does not follow the normalised symbol grammar."""


@dataclass(frozen=True, order=True)
class Symbol:
    base: str
    quote: str
    type: InstrumentType = InstrumentType.SPOT
    expiry: str | None = None
    strike: str | None = None
    option_type: str | None = None

    @classmethod
    def parse(cls, name: str) -> Symbol:
        """Parse a normalised name such as ``BTC.USD`` or ``ETH.USDT-PERP``."""
        match = _GRAMMAR.match(name)
        if not match:
            raise SymbolError(
                f"{name!r} is not a normalised symbol: expected BASE.QUOTE (e.g. BTC.USD), "
                "BASE.QUOTE-PERP, BASE.QUOTE-YYYYMMDD or BASE.QUOTE-YYYYMMDD-STRIKE-C|P"
            )
        if match["perp"]:
            kind = InstrumentType.PERPETUAL
        elif match["option"]:
            kind = InstrumentType.OPTION
        elif match["expiry"]:
            kind = InstrumentType.FUTURE
        else:
            kind = InstrumentType.SPOT
        return cls(match["base"], match["quote"], kind, match["expiry"], match["strike"], match["option"])

    @property
    def normalised(self) -> str:
        name = f"{self.base}.{self.quote}"
        if self.type is InstrumentType.PERPETUAL:
            return f"{name}-PERP"
        if self.type is InstrumentType.FUTURE:
            return f"{name}-{self.expiry}"
        if self.type is InstrumentType.OPTION:
            return f"{name}-{self.expiry}-{self.strike}-{self.option_type}"
        return name

    def __str__(self) -> str:
        return self.normalised
