"""Deterministic Coinbase Exchange order flow, generated from a real level-3 book.

The simulator must produce traffic that a Coinbase L3 consumer can rebuild a
book from, so every message here is the consequence of an operation on an
actual book: ``open`` rests an order, ``match`` trades against resting orders
in price-time priority, ``change`` shrinks a resting order and ``done``
removes it.  The module is pure (no I/O, no wall clock, one seeded
``random.Random``): the same seed and products give the same messages, and
the caller passes the time in, so tests can pin it and the server can use
real time.

Message layouts and key order follow what Coinbase's ``full`` and ``ticker``
channels send; the REST shapes follow ``GET /products`` and
``GET /products/{id}/book``.
"""

from __future__ import annotations

import bisect
import math
import random
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

DEFAULT_PRODUCTS: tuple[str, ...] = ("BTC-USD", "ETH-USD", "SOL-USD")

SIZE_DECIMALS = 8
BASE_INCREMENT = "0.00000001"
MICROS_PER_SECOND = 1_000_000
PRICE_CACHE_LIMIT = 100_000

# Book shape: how many orders each side holds at start and aims for later.
DEFAULT_BOOK_DEPTH = 100
# Mean distance of a passive order behind the opposite best price, as a share of the price.
PASSIVE_OFFSET_SHARE = 0.0005
MIN_PASSIVE_OFFSET_TICKS = 2.0
# A marketable limit order reaches this share of the passive offset through the book.
CROSS_REACH_SHARE = 0.1
# Market orders never take more than this many resting orders, so they always fill.
MARKET_MAX_FILLS = 4
# Event mix: the remainder is passive adds and cancels, balanced by book depth.
MARKET_ORDER_SHARE = 0.03
CROSSING_LIMIT_SHARE = 0.07
CHANGE_SHARE = 0.03
# Share of orders that carry a client order id (the rest send an empty one).
CLIENT_OID_SHARE = 0.5
# Spread of order sizes around the product's typical size (lognormal sigma).
SIZE_SIGMA = 1.0
# Where the first sequence number and trade id of a product fall.
FIRST_SEQUENCE_RANGE = (1_000_000_000, 50_000_000_000)
FIRST_TRADE_ID_RANGE = (10_000_000, 900_000_000)
# Starting 24 h volume in typical order sizes; 30 days hold about this many days of it.
START_VOLUME_ORDERS = (20_000, 80_000)
DAYS_IN_VOLUME_30D = 27

# Order ids are random version-4 UUIDs drawn from the seeded RNG, a batch at a time (formatting is the cost).
UUID_BATCH = 256
_UUID_HEX_DIGITS = 32
_UUID_VERSION_VARIANT_MASK = ((1 << 128) - 1) ^ ((0xF << 76) | (0x3 << 62))
_UUID_VERSION_4_BITS = (0x4 << 76) | (0x2 << 62)
_UUID_BATCH_MASK = sum(_UUID_VERSION_VARIANT_MASK << (128 * i) for i in range(UUID_BATCH))
_UUID_BATCH_BITS = sum(_UUID_VERSION_4_BITS << (128 * i) for i in range(UUID_BATCH))

BUY = "buy"
SELL = "sell"


@dataclass(frozen=True)
class ProductSpec:
    """What the simulator needs to know about one product to trade it plausibly."""

    product_id: str
    base_currency: str
    quote_currency: str
    quote_increment: str
    start_price: str
    typical_size: str
    min_market_funds: str = "1"

    @property
    def price_decimals(self) -> int:
        """Digits after the point in a price, from ``quote_increment``."""
        _, _, fraction = self.quote_increment.partition(".")
        return len(fraction)

    def rest_product(self) -> dict:
        """The product as Coinbase's ``GET /products`` lists it."""
        return {
            "id": self.product_id,
            "base_currency": self.base_currency,
            "quote_currency": self.quote_currency,
            "quote_increment": self.quote_increment,
            "base_increment": BASE_INCREMENT,
            "display_name": self.product_id,
            "min_market_funds": self.min_market_funds,
            "margin_enabled": False,
            "post_only": False,
            "limit_only": False,
            "cancel_only": False,
            "status": "online",
            "status_message": "",
            "trading_disabled": False,
            "fx_stablecoin": False,
            "max_slippage_percentage": "0.02000000",
            "auction_mode": False,
            "high_bid_limit_percentage": "",
        }


KNOWN_PRODUCTS: dict[str, ProductSpec] = {
    spec.product_id: spec
    for spec in (
        ProductSpec("BTC-USD", "BTC", "USD", "0.01", "30000.00", "0.05", "1"),
        ProductSpec("ETH-USD", "ETH", "USD", "0.01", "2000.00", "0.5", "1"),
        ProductSpec("SOL-USD", "SOL", "USD", "0.01", "25.00", "10", "1"),
        ProductSpec("BTC-EUR", "BTC", "EUR", "0.01", "28000.00", "0.05", "1"),
        ProductSpec("ETH-BTC", "ETH", "BTC", "0.00001", "0.06500", "0.5", "0.00001"),
    )
}
FALLBACK_START_PRICE = "100.00"
FALLBACK_QUOTE_INCREMENT = "0.01"
FALLBACK_TYPICAL_SIZE = "1"


def product_spec(product_id: str) -> ProductSpec:
    """The spec of a known product, or a plausible one for any ``BASE-QUOTE`` id."""
    if product_id in KNOWN_PRODUCTS:
        return KNOWN_PRODUCTS[product_id]
    base, sep, quote = product_id.partition("-")
    if not sep or not base or not quote or "-" in quote or product_id != product_id.upper():
        raise ValueError(f"{product_id!r} is not a Coinbase product id like BTC-USD")
    return ProductSpec(product_id, base, quote, FALLBACK_QUOTE_INCREMENT, FALLBACK_START_PRICE, FALLBACK_TYPICAL_SIZE)


def format_fixed(value: int, decimals: int) -> str:
    """An integer count of ``10**-decimals`` units as Coinbase's fixed-point string (hot path: no divmod)."""
    if decimals == 0:
        return str(value)
    digits = str(value).rjust(decimals + 1, "0")
    return f"{digits[:-decimals]}.{digits[-decimals:]}"


def format_size(units: int) -> str:
    """A size in 1e-8 units with Coinbase's 8 decimals."""
    digits = str(units).rjust(SIZE_DECIMALS + 1, "0")
    return f"{digits[:-SIZE_DECIMALS]}.{digits[-SIZE_DECIMALS:]}"


def parse_fixed(text: str, decimals: int) -> int:
    """Inverse of :func:`format_fixed`: a decimal string to integer units, exactly."""
    whole, _, fraction = text.partition(".")
    if len(fraction) > decimals:
        raise ValueError(f"{text!r} has more than {decimals} decimals")
    return int(whole) * 10**decimals + int(fraction.ljust(decimals, "0") or 0)


def trim_decimal(text: str) -> str:
    """Drop trailing zeros as the ticker channel does for prices ("30000.10" -> "30000.1")."""
    if "." not in text:
        return text
    return text.rstrip("0").rstrip(".")


class IsoClock:
    """ISO-8601 UTC text with microseconds and ``Z``, caching the per-second prefix."""

    __slots__ = ("_prefix", "_second")

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def __call__(self, micros: int) -> str:
        second, fraction = divmod(micros, MICROS_PER_SECOND)
        if second != self._second:
            self._second = second
            self._prefix = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._prefix}.{fraction:06d}Z"


class _Order:
    """A resting limit order; ``slot`` is its index in its side's random-pick list."""

    __slots__ = ("order_id", "price", "size", "slot")

    def __init__(self, order_id: str, price: int, size: int) -> None:
        self.order_id = order_id
        self.price = price
        self.size = size
        self.slot = -1


class _BookSide:
    """One side of an L3 book: price levels in time priority and a sorted price list."""

    __slots__ = ("is_bid", "level_sizes", "levels", "prices", "resting", "side")

    def __init__(self, side: str) -> None:
        self.side = side
        self.is_bid = side == BUY
        self.prices: list[int] = []  # ascending for both sides
        self.levels: dict[int, dict[str, _Order]] = {}
        self.level_sizes: dict[int, int] = {}
        self.resting: list[_Order] = []  # every order on this side, for uniform random picks

    def best(self) -> int | None:
        if not self.prices:
            return None
        return self.prices[-1] if self.is_bid else self.prices[0]

    def first_order(self, price: int) -> _Order:
        return next(iter(self.levels[price].values()))

    def add(self, order: _Order) -> None:
        level = self.levels.get(order.price)
        if level is None:
            bisect.insort(self.prices, order.price)
            level = self.levels[order.price] = {}
            self.level_sizes[order.price] = 0
        level[order.order_id] = order
        self.level_sizes[order.price] += order.size
        order.slot = len(self.resting)
        self.resting.append(order)

    def remove(self, order: _Order) -> None:
        level = self.levels[order.price]
        del level[order.order_id]
        if level:
            self.level_sizes[order.price] -= order.size
        else:
            del self.levels[order.price]
            del self.level_sizes[order.price]
            del self.prices[bisect.bisect_left(self.prices, order.price)]
        last = self.resting.pop()
        if last is not order:
            self.resting[order.slot] = last
            last.slot = order.slot

    def reduce(self, order: _Order, amount: int) -> None:
        order.size -= amount
        self.level_sizes[order.price] -= amount

    def prices_best_first(self) -> list[int]:
        return self.prices[::-1] if self.is_bid else list(self.prices)

    def liquidity(self, max_orders: int) -> int:
        """Total size of the first ``max_orders`` orders a taker would meet."""
        total = 0
        remaining = max_orders
        for price in self.prices_best_first():
            for order in self.levels[price].values():
                total += order.size
                remaining -= 1
                if not remaining:
                    return total
        return total


class _Product:
    """Book, counters and 24 h statistics of one product."""

    def __init__(self, spec: ProductSpec, rng: random.Random) -> None:
        self.spec = spec
        self.product_id = spec.product_id
        self.decimals = spec.price_decimals
        self.bids = _BookSide(BUY)
        self.asks = _BookSide(SELL)
        self.sequence = rng.randrange(*FIRST_SEQUENCE_RANGE)
        self.trade_id = rng.randrange(*FIRST_TRADE_ID_RANGE)
        self.start_ticks = parse_fixed(spec.start_price, self.decimals)
        self.last_price = self.start_ticks
        self.typical_size = parse_fixed(spec.typical_size, SIZE_DECIMALS)
        self.passive_offset = max(MIN_PASSIVE_OFFSET_TICKS, self.start_ticks * PASSIVE_OFFSET_SHARE)
        self.open_24h = self.low_24h = self.high_24h = self.start_ticks
        self.volume_24h = self.typical_size * rng.randrange(*START_VOLUME_ORDERS)
        self.volume_30d = self.volume_24h * DAYS_IN_VOLUME_30D
        # What has been handed out so far (the book may be a few messages ahead).
        self.emitted_sequence = self.sequence
        self.emitted_trade_id = self.trade_id
        self.last_ticker: dict | None = None
        self._price_texts: dict[int, str] = {}

    def side(self, side: str) -> _BookSide:
        return self.bids if side == BUY else self.asks

    def opposite(self, side: str) -> _BookSide:
        return self.asks if side == BUY else self.bids

    def price(self, ticks: int) -> str:
        """Price text; cached because the same few levels are formatted over and over."""
        text = self._price_texts.get(ticks)
        if text is None:
            if len(self._price_texts) >= PRICE_CACHE_LIMIT:
                self._price_texts.clear()
            text = self._price_texts[ticks] = format_fixed(ticks, self.decimals)
        return text

    def next_sequence(self) -> int:
        self.sequence += 1
        return self.sequence


class OrderFlow:
    """Seeded generator of Coinbase ``full`` and ``ticker`` messages over live L3 books.

    ``take(n, now_us)`` hands out the next ``n`` messages; one order event
    (a received order with its matches, say) can span two calls, and the
    book always reflects every message generated so far, so
    :meth:`snapshot` is a valid Coinbase level-3 snapshot for its
    ``sequence``.
    """

    def __init__(
        self,
        seed: int = 1,
        product_ids: Sequence[str] = DEFAULT_PRODUCTS,
        *,
        book_depth: int = DEFAULT_BOOK_DEPTH,
    ) -> None:
        if not product_ids:
            raise ValueError("at least one product is needed")
        if len(set(product_ids)) != len(product_ids):
            raise ValueError(f"duplicate product ids in {list(product_ids)}")
        self._rng = random.Random(seed)
        self._book_depth = book_depth
        self._products = {pid: _Product(product_spec(pid), self._rng) for pid in product_ids}
        self._product_list = list(self._products.values())
        self._pending: list[dict] = []
        self._clock = IsoClock()
        self._uuids: list[str] = []
        self.generated = 0
        for product in self._product_list:
            self._seed_book(product)

    # ----------------------------------------------------------------- output

    @property
    def product_ids(self) -> list[str]:
        return list(self._products)

    @property
    def pending_count(self) -> int:
        """Messages already applied to the books but not yet handed out."""
        return len(self._pending)

    def take(self, count: int, now_us: int) -> list[dict]:
        """The next ``count`` messages; new events are stamped with ``now_us`` (µs since epoch)."""
        pending = self._pending
        if len(pending) < count:
            stamp = self._clock(now_us)
            while len(pending) < count:
                self._step(stamp, pending)
        out = pending[:count]
        del pending[:count]
        products = self._products
        for message in out:
            product = products[message["product_id"]]
            product.emitted_sequence = message["sequence"]
            kind = message["type"]
            if kind == "match":
                product.emitted_trade_id = message["trade_id"]
            elif kind == "ticker":
                product.last_ticker = message
        self.generated += count
        return out

    def messages(self, clock: Callable[[], int]) -> Iterator[dict]:
        """Endless message stream, one at a time, stamped by ``clock()`` (µs since epoch)."""
        while True:
            yield from self.take(1, clock())

    def sequence(self, product_id: str) -> int:
        """Sequence number of the last message handed out for ``product_id``."""
        return self._products[product_id].emitted_sequence

    def last_trade_id(self, product_id: str) -> int:
        """Trade id of the last match handed out for ``product_id``."""
        return self._products[product_id].emitted_trade_id

    def last_ticker(self, product_id: str) -> dict | None:
        """The last ticker handed out (sent to new ticker subscribers), if any."""
        return self._products[product_id].last_ticker

    def heartbeat(self, product_id: str, now_us: int) -> dict:
        """A ``heartbeat`` channel message for the flow handed out so far."""
        product = self._products[product_id]
        return {
            "type": "heartbeat",
            "last_trade_id": product.emitted_trade_id,
            "product_id": product_id,
            "sequence": product.emitted_sequence,
            "time": self._clock(now_us),
        }

    def products(self) -> list[dict]:
        """``GET /products`` body for the simulated products."""
        return [product.spec.rest_product() for product in self._product_list]

    def snapshot(self, product_id: str) -> dict:
        """Level-3 book: every resting order, best price first, in time priority."""
        return self.book(product_id, level=3)

    def book(self, product_id: str, level: int = 3) -> dict:
        """``GET /products/{id}/book`` body at ``level`` 1 (best), 2 (aggregated) or 3 (orders)."""
        product = self._products[product_id]
        return {
            "bids": self._book_side(product, product.bids, level),
            "asks": self._book_side(product, product.asks, level),
            "sequence": product.sequence,
        }

    @staticmethod
    def _book_side(product: _Product, side: _BookSide, level: int) -> list[list]:
        prices = side.prices_best_first()
        if level == 3:
            return [
                [product.price(price), format_size(order.size), order.order_id]
                for price in prices
                for order in side.levels[price].values()
            ]
        if level == 1:
            prices = prices[:1]
        elif level != 2:
            raise ValueError(f"book level must be 1, 2 or 3, not {level}")
        return [
            [product.price(price), format_size(side.level_sizes[price]), len(side.levels[price])] for price in prices
        ]

    # ------------------------------------------------------------- generation

    def _uuid4(self) -> str:
        if not self._uuids:
            bits = (self._rng.getrandbits(128 * UUID_BATCH) & _UUID_BATCH_MASK) | _UUID_BATCH_BITS
            text = f"{bits:0{_UUID_HEX_DIGITS * UUID_BATCH}x}"
            self._uuids = [
                f"{text[i : i + 8]}-{text[i + 8 : i + 12]}-{text[i + 12 : i + 16]}-{text[i + 16 : i + 20]}-"
                f"{text[i + 20 : i + 32]}"
                for i in range(0, len(text), _UUID_HEX_DIGITS)
            ]
        return self._uuids.pop()

    def _pick(self, count: int) -> int:
        """A uniform index below ``count`` (cheaper than ``randrange`` on the hot path)."""
        return int(self._rng.random() * count)

    def _size(self, product: _Product) -> int:
        return max(1, int(product.typical_size * math.exp(self._rng.gauss(0.0, SIZE_SIGMA))))

    def _offset(self, mean_ticks: float) -> int:
        return int(self._rng.expovariate(1.0 / mean_ticks))

    def _seed_book(self, product: _Product) -> None:
        """Fill both sides around the start price without messages: the book before the flow."""
        for _ in range(self._book_depth):
            for side, direction in ((product.bids, -1), (product.asks, 1)):
                price = product.start_ticks + direction * (1 + self._offset(product.passive_offset))
                side.add(_Order(self._uuid4(), max(1, price), self._size(product)))

    def _step(self, stamp: str, out: list[dict]) -> None:
        """Generate one order event on a random product and append its messages to ``out``."""
        rng = self._rng
        product = self._product_list[self._pick(len(self._product_list))]
        side = BUY if rng.random() < 0.5 else SELL
        draw = rng.random()
        if draw < MARKET_ORDER_SHARE:
            self._market_order(product, side, stamp, out)
        elif draw < MARKET_ORDER_SHARE + CROSSING_LIMIT_SHARE:
            self._crossing_limit(product, side, stamp, out)
        elif draw < MARKET_ORDER_SHARE + CROSSING_LIMIT_SHARE + CHANGE_SHARE:
            self._change(product, side, stamp, out)
        else:
            resting = len(product.side(side).resting)
            if rng.random() < self._book_depth / (self._book_depth + resting):
                self._passive_limit(product, side, stamp, out)
            else:
                self._cancel(product, side, stamp, out)

    def _passive_limit(self, product: _Product, side: str, stamp: str, out: list[dict]) -> None:
        offset = self._offset(product.passive_offset)
        if side == BUY:
            ceiling = product.asks.best() or (product.bids.best() or product.last_price) + 1
            price = ceiling - 1 - offset
            if price < 1:  # no room below the best ask: the order joins the other side instead
                side, price = SELL, ceiling + offset
        else:
            floor = product.bids.best() or max(0, (product.asks.best() or product.last_price) - 1)
            price = floor + 1 + offset
        order_id = self._uuid4()
        size = self._size(product)
        out.append(self._received_limit(product, order_id, side, price, size, stamp))
        self._open(product, _Order(order_id, price, size), side, stamp, out)

    def _crossing_limit(self, product: _Product, side: str, stamp: str, out: list[dict]) -> None:
        best = product.opposite(side).best()
        if best is None:
            self._passive_limit(product, side, stamp, out)
            return
        reach = self._offset(max(1.0, product.passive_offset * CROSS_REACH_SHARE))
        price = best + reach if side == BUY else max(1, best - reach)
        order_id = self._uuid4()
        size = self._size(product)
        out.append(self._received_limit(product, order_id, side, price, size, stamp))
        remaining = self._take_liquidity(product, side, order_id, size, price, stamp, out)
        if remaining:
            self._open(product, _Order(order_id, price, remaining), side, stamp, out)
        else:
            out.append(self._done(product, order_id, side, stamp, "filled", price, 0))

    def _market_order(self, product: _Product, side: str, stamp: str, out: list[dict]) -> None:
        available = product.opposite(side).liquidity(MARKET_MAX_FILLS)
        if not available:
            self._passive_limit(product, side, stamp, out)
            return
        size = min(self._size(product), available)
        order_id = self._uuid4()
        out.append(
            {
                "order_id": order_id,
                "order_type": "market",
                "size": format_size(size),
                "client_oid": self._client_oid(),
                "type": "received",
                "side": side,
                "product_id": product.product_id,
                "time": stamp,
                "sequence": product.next_sequence(),
            }
        )
        self._take_liquidity(product, side, order_id, size, None, stamp, out)
        out.append(
            {
                "order_id": order_id,
                "reason": "filled",
                "type": "done",
                "side": side,
                "product_id": product.product_id,
                "time": stamp,
                "sequence": product.next_sequence(),
            }
        )

    def _change(self, product: _Product, side: str, stamp: str, out: list[dict]) -> None:
        book_side = product.side(side)
        if not book_side.resting:
            self._passive_limit(product, side, stamp, out)
            return
        order = book_side.resting[self._pick(len(book_side.resting))]
        if order.size < 2:
            self._cancel(product, side, stamp, out)
            return
        old_size = order.size
        book_side.reduce(order, self._rng.randint(1, old_size - 1))
        out.append(
            {
                "type": "change",
                "reason": "STP",
                "time": stamp,
                "sequence": product.next_sequence(),
                "order_id": order.order_id,
                "side": side,
                "product_id": product.product_id,
                "new_size": format_size(order.size),
                "old_size": format_size(old_size),
                "price": product.price(order.price),
            }
        )

    def _cancel(self, product: _Product, side: str, stamp: str, out: list[dict]) -> None:
        book_side = product.side(side)
        if not book_side.resting:
            self._passive_limit(product, side, stamp, out)
            return
        order = book_side.resting[self._pick(len(book_side.resting))]
        book_side.remove(order)
        out.append(self._done(product, order.order_id, side, stamp, "canceled", order.price, order.size))

    def _take_liquidity(
        self,
        product: _Product,
        side: str,
        taker_id: str,
        size: int,
        limit: int | None,
        stamp: str,
        out: list[dict],
    ) -> int:
        """Match a taker against the opposite side in price-time priority; the unfilled size."""
        book_side = product.opposite(side)
        maker_side = book_side.side
        remaining = size
        while remaining:
            best = book_side.best()
            if best is None or (limit is not None and (best > limit if side == BUY else best < limit)):
                break
            maker = book_side.first_order(best)
            fill = min(remaining, maker.size)
            remaining -= fill
            maker_filled = fill == maker.size
            if maker_filled:
                book_side.remove(maker)
            else:
                book_side.reduce(maker, fill)
            product.trade_id += 1
            match = {
                "type": "match",
                "trade_id": product.trade_id,
                "maker_order_id": maker.order_id,
                "taker_order_id": taker_id,
                "side": maker_side,
                "size": format_size(fill),
                "price": product.price(best),
                "product_id": product.product_id,
                "sequence": product.next_sequence(),
                "time": stamp,
            }
            out.append(match)
            out.append(self._ticker(product, match, side, best, fill))
            if maker_filled:
                out.append(self._done(product, maker.order_id, maker_side, stamp, "filled", best, 0))
        return remaining

    def _ticker(self, product: _Product, match: dict, taker_side: str, price: int, size: int) -> dict:
        """The ticker Coinbase sends after a match: ``side`` is the taker's, prices trimmed."""
        product.last_price = price
        product.low_24h = min(product.low_24h, price)
        product.high_24h = max(product.high_24h, price)
        product.volume_24h += size
        product.volume_30d += size
        best_bid = product.bids.best()
        best_ask = product.asks.best()
        return {
            "type": "ticker",
            "sequence": match["sequence"],
            "product_id": product.product_id,
            "price": trim_decimal(match["price"]),
            "open_24h": trim_decimal(product.price(product.open_24h)),
            "volume_24h": format_size(product.volume_24h),
            "low_24h": trim_decimal(product.price(product.low_24h)),
            "high_24h": trim_decimal(product.price(product.high_24h)),
            "volume_30d": format_size(product.volume_30d),
            "best_bid": product.price(best_bid) if best_bid is not None else "0",
            "best_bid_size": format_size(product.bids.level_sizes.get(best_bid, 0)),
            "best_ask": product.price(best_ask) if best_ask is not None else "0",
            "best_ask_size": format_size(product.asks.level_sizes.get(best_ask, 0)),
            "side": taker_side,
            "time": match["time"],
            "trade_id": match["trade_id"],
            "last_size": match["size"],
        }

    def _client_oid(self) -> str:
        return self._uuid4() if self._rng.random() < CLIENT_OID_SHARE else ""

    def _received_limit(self, product: _Product, order_id: str, side: str, price: int, size: int, stamp: str) -> dict:
        return {
            "order_id": order_id,
            "order_type": "limit",
            "size": format_size(size),
            "price": product.price(price),
            "client_oid": self._client_oid(),
            "type": "received",
            "side": side,
            "product_id": product.product_id,
            "time": stamp,
            "sequence": product.next_sequence(),
        }

    def _open(self, product: _Product, order: _Order, side: str, stamp: str, out: list[dict]) -> None:
        product.side(side).add(order)
        out.append(
            {
                "price": product.price(order.price),
                "order_id": order.order_id,
                "remaining_size": format_size(order.size),
                "type": "open",
                "side": side,
                "product_id": product.product_id,
                "time": stamp,
                "sequence": product.next_sequence(),
            }
        )

    @staticmethod
    def _done(product: _Product, order_id: str, side: str, stamp: str, reason: str, price: int, remaining: int) -> dict:
        return {
            "order_id": order_id,
            "reason": reason,
            "price": product.price(price),
            "remaining_size": format_size(remaining),
            "type": "done",
            "side": side,
            "product_id": product.product_id,
            "time": stamp,
            "sequence": product.next_sequence(),
        }
