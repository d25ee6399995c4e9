"""Binance USD-M futures -> ``lob``, ``trades``, ``ticker``, ``candle``, ``funding_rate``, ``open_interest``.

Book, trade, ticker and kline payloads are spot's (:mod:`.binance`), with the
matching engine's time ``T`` on depth and bookTicker frames.  A diff names the
previous diff's final update id (``pu``): that is its ``prev_sequence`` (``u`` is
its ``sequence``); diffs with ``u`` <= the REST snapshot's ``lastUpdateId`` hold only
updates already in it and are skipped (Binance documents dropping ``u`` <
``lastUpdateId``; one with ``u`` equal to it is inside the snapshot too).
``markPriceUpdate`` gives the funding rate (``r``), mark price (``p``; ``P`` is
only the estimated settle price), index price (``i``) and next funding time
(``T``); dated futures have no funding (``r`` is ``""``) and are skipped.  Open
interest comes from the connector's polls of ``GET /fapi/v1/openInterest``.
"""

from __future__ import annotations

from typing import ClassVar

from l3_atom.stream_processing import records_build
from l3_atom.stream_processing.standardiser import Output, exact, integer
from l3_atom.stream_processing.standardisers.binance import OPEN_INTEREST, BinanceStandardiser
from l3_atom.topics import FUNDING_RATE
from l3_atom.topics import OPEN_INTEREST as OPEN_INTEREST_TOPIC

NO_FUNDING = ""


class BinanceFuturesStandardiser(BinanceStandardiser):
    source = "binance-futures"
    topics = (*BinanceStandardiser.topics, FUNDING_RATE, OPEN_INTEREST_TOPIC)
    handlers: ClassVar[dict[str, str]] = {
        **BinanceStandardiser.handlers,
        "markPriceUpdate": "_mark_price",
        OPEN_INTEREST: "_open_interest",
    }

    @staticmethod
    def previous_update_id(message: dict) -> int:
        """``pu``: the final update id of the diff before this one."""
        return integer(message["pu"])

    def _mark_price(self, message: dict, atom_timestamp: int) -> list[Output]:
        symbol = self.symbol_of(message["s"])
        rate = message["r"]
        if rate == NO_FUNDING:
            return self.skip("markPriceUpdate of a dated future: no funding")
        record = records_build.funding_rate(
            exchange=self.source,
            symbol=symbol,
            rate=exact(rate),
            mark_price=exact(message["p"]),
            index_price=exact(message["i"]),
            next_funding_timestamp=integer(message["T"]),
            event_timestamp=integer(message["E"]),
            atom_timestamp=atom_timestamp,
        )
        return [Output(FUNDING_RATE, self._key(symbol), record)]

    def _open_interest(self, message: dict, atom_timestamp: int) -> list[Output]:
        symbol = self.symbol_of(message["symbol"])
        record = records_build.open_interest(
            exchange=self.source,
            symbol=symbol,
            open_interest=exact(message[OPEN_INTEREST]),
            event_timestamp=integer(message["time"]),
            atom_timestamp=atom_timestamp,
        )
        return [Output(OPEN_INTEREST_TOPIC, self._key(symbol), record)]
