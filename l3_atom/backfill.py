"""Trades missed while a connection was down, fetched from the venue's REST trade history.

Each venue that documents a trade history declares a :class:`TradeHistory` in its
connector module (its paths, parameters and id scheme); the paging here is the
same for all of them.  A venue pages one of two ways:
- newest first, with a cursor to older pages (Coinbase's ``after``): paging goes back
  until a page reaches before the gap;
- oldest first, from an id or a time (Binance's ``fromId``, Kraken's ``since``):
  paging goes forward until a page reaches past the gap.  Where the cursor is a time
  (Bitfinex's ``start``, Deribit's ``start_timestamp``: ``cursor_is_time``), the next
  page starts at the last page's last millisecond, inclusive, so that trades sharing
  it are not skipped; the repeats at that boundary are dropped by trade id.

A venue whose history cannot start from a time (Binance spot's ``historicalTrades``
pages only by trade id) declares a ``locate`` request whose answer names the first
cursor; one whose cursor is not a trade id (Kraken's ``since``, a time named by the
page itself) overrides ``next_cursor`` and ``follows``.

Paging stops early, saying why, when a page does not line up (ids out of order, a
page that repeats the last) or after ``max_pages``: what was not fetched is reported
as not recoverable, never invented.  Pages are returned oldest first, as the venue
sent them, to be archived in the raw topic; the standardiser drops the trades
already streamed on either side of the gap (by trade id).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Awaitable, Callable, Sequence
from itertools import pairwise
from typing import ClassVar, NamedTuple

# Trades this much older than the gap are fetched too: the clocks of venue and connector may differ a little.
OVERLAP_MS = 2000
DEFAULT_MAX_PAGES = 50

GetText = Callable[[str, dict[str, str]], Awaitable[str]]


class TradeRef(NamedTuple):
    """What paging needs of one trade of a page: its id and time (ms)."""

    trade_id: int
    time_ms: int


class Request(NamedTuple):
    path: str
    params: dict[str, str]


class TradeHistory(ABC):
    """A venue's REST trade history, declared in its connector module (pure: no I/O)."""

    # The raw feed of the symbol's trades: the backfilled pages are archived under its key.
    feed: ClassVar[str]
    # True: pages come newest first with a cursor to older ones; False: oldest first, from a cursor on.
    newest_first: ClassVar[bool]
    # Whether the venue numbers a symbol's trades 1, 2, 3, ... (then a missing id is a missing trade).
    sequential_ids: ClassVar[bool] = False
    # Oldest-first paging whose cursor is a time (ms, inclusive) rather than a trade id.
    cursor_is_time: ClassVar[bool] = False
    # The most trades a page holds (0: not declared): a time-cursored page full of one millisecond cannot page on.
    page_size: ClassVar[int] = 0
    # True where the first page (asked by time) holds the newest ``page_size`` trades after that time, not the
    # oldest: a full first page then leaves the trades between the time and its oldest trade out of reach.
    first_page_newest: ClassVar[bool] = False
    max_pages: ClassVar[int] = DEFAULT_MAX_PAGES

    @abstractmethod
    def request(self, exchange_symbol: str, since_ms: int, cursor: int | None) -> Request:
        """The request of the first page (``cursor`` None) or of the page ``cursor`` names."""

    @abstractmethod
    def trades(self, body: str) -> list[TradeRef]:
        """The trades of one page, as listed; ValueError when the body is not a page of trades."""

    def locate(self, exchange_symbol: str, since_ms: int) -> Request | None:
        """A request whose answer names the first page's cursor (:meth:`located`); None: the first page is by time."""
        return None

    def located(self, body: str) -> int | None:
        """The first page's cursor from the answer to :meth:`locate`; None when no trade came since then."""
        raise NotImplementedError(f"{type(self).__name__} declares no locate request")

    def follows(self, page: Sequence[TradeRef], cursor: int) -> bool:
        """Whether ``page`` starts where its request's ``cursor`` said (by trade id; ids below it, newest first)."""
        first = page[0].trade_id
        return first < cursor if self.newest_first else first >= cursor

    def next_cursor(self, body: str, cursor: int) -> int:
        """The cursor of the next page: ``cursor``, worked out from the page's ids, unless the page names one."""
        return cursor


class Step(NamedTuple):
    """After a page: the next cursor, or None with ``problem`` None (done) or saying what went wrong."""

    cursor: int | None
    problem: str | None = None


def next_step(history: TradeHistory, page: Sequence[TradeRef], since_ms: int, until_ms: int,
              cursor: int | None) -> Step:
    """Where paging goes after ``page`` (the paging stop conditions, for both directions)."""
    if not page:
        return Step(None)  # the history ends here
    ids = [trade.trade_id for trade in page]
    if history.newest_first:
        if ids != sorted(ids, reverse=True):
            return Step(None, f"ids out of order in a newest-first page: {ids[:3]}...")
        if cursor is not None and not history.follows(page, cursor):
            return Step(None, f"page repeats: asked for ids below {cursor}, got {ids[0]}")
        if min(trade.time_ms for trade in page) < since_ms:
            return Step(None)  # reached before the gap
        return Step(ids[-1])
    if history.cursor_is_time:
        return _next_time(history, page, until_ms, cursor)
    if ids != sorted(ids):
        return Step(None, f"ids out of order in an oldest-first page: {ids[:3]}...")
    if cursor is not None and not history.follows(page, cursor):
        return Step(None, f"page repeats: asked for trades from {cursor}, got id {ids[0]}")
    if max(trade.time_ms for trade in page) >= until_ms:
        return Step(None)  # reached past the gap
    return Step(ids[-1] + 1)


def _next_time(history: TradeHistory, page: Sequence[TradeRef], until_ms: int, cursor: int | None) -> Step:
    """Oldest-first paging by time: the next page starts at this page's last millisecond (inclusive)."""
    times = [trade.time_ms for trade in page]
    if times != sorted(times):
        return Step(None, f"times out of order in an oldest-first page: {times[:3]}...")
    if cursor is not None and times[0] < cursor:
        return Step(None, f"page repeats: asked for trades from {cursor} ms, got {times[0]}")
    if times[-1] >= until_ms:
        return Step(None)  # reached past the gap
    if cursor is not None and times[-1] == cursor:  # nothing later than the boundary
        if history.page_size and len(page) >= history.page_size:
            return Step(None, f"more than {history.page_size} trades at {cursor} ms: paging by time cannot pass them")
        return Step(None)  # only the boundary's trades again: the history ends here
    return Step(times[-1])


def id_holes(ids: Sequence[int]) -> list[tuple[int, int]]:
    """``(before, after)`` of every run of missing ids between the sorted, distinct ``ids``."""
    ordered = sorted(set(ids))
    return [(low, high) for low, high in pairwise(ordered) if high - low > 1]


class History(NamedTuple):
    """What a backfill fetched: the pages' bodies (oldest first), their trades, and why it stopped early.

    ``unreached`` is ``(start, end)`` (ms) of a stretch at the gap's start the venue's paging could not
    reach (:attr:`TradeHistory.first_page_newest`), else None.
    """

    pages: list[str]
    trades: list[TradeRef]
    problem: str | None
    unreached: tuple[int, int] | None = None


def unreached_start(history: TradeHistory, first_page: Sequence[TradeRef], gap_start_ms: int,
                    ) -> tuple[int, int] | None:
    """``(gap start, oldest trade's time)`` when a full newest-after-time first page may have left trades out.

    Only a first page whose oldest trade lies inside the gap says so: one that reaches back into the
    overlap before it missed nothing of the gap.
    """
    if not (history.first_page_newest and history.page_size and len(first_page) >= history.page_size):
        return None
    oldest = min(trade.time_ms for trade in first_page)
    return (gap_start_ms, oldest) if oldest > gap_start_ms else None


async def fetch_history(get_text: GetText, history: TradeHistory, exchange_symbol: str, since_ms: int,
                        until_ms: int) -> History:
    """Page through the venue's trades from ``since_ms`` (less the overlap) to ``until_ms``."""
    gap_start_ms = since_ms
    since_ms -= OVERLAP_MS
    pages: list[str] = []
    trades: list[TradeRef] = []
    cursor: int | None = None
    problem = None
    unreached = None
    locator = history.locate(exchange_symbol, since_ms)
    if locator is not None:
        try:
            cursor = history.located(await get_text(locator.path, locator.params))
        except (ValueError, TypeError, KeyError) as exc:
            return History([], [], f"unreadable answer from {locator.path}: {exc}")
        if cursor is None:
            return History([], [], None)  # no trade since the gap began
    for _ in range(history.max_pages):
        request = history.request(exchange_symbol, since_ms, cursor)
        body = await get_text(request.path, request.params)
        try:
            page = history.trades(body)
        except (ValueError, TypeError, KeyError) as exc:
            problem = f"unreadable page from {request.path}: {exc}"
            break
        step = next_step(history, page, since_ms, until_ms, cursor)
        if step.problem is not None:
            problem = step.problem
            break
        if not pages:
            unreached = unreached_start(history, page, gap_start_ms)
        pages.append(body)
        trades.extend(page)
        if step.cursor is None:
            break
        cursor = history.next_cursor(body, step.cursor)
    else:
        problem = f"stopped after {history.max_pages} pages"
    if history.newest_first:
        pages.reverse()
    # Time-cursored pages repeat the trades of their boundary millisecond: each trade once.
    return History(pages, sorted(set(trades)), problem, unreached)
