"""Venues' limits as data, and the limiter that keeps a source inside them.

Each ``DataFeed`` declares its venue's documented public limits as a
:class:`Limits` (cited in the class docstring).  One :class:`RestLimiter` per
source process serves every REST request of that source: symbol lists, book
snapshots, polls and anything added later (``async with limiter.slot(weight)``).

The arithmetic is pure and takes the time as an argument (:class:`Window`,
:class:`Budget`), so it is tested with a made-up clock; only
:class:`RestLimiter` and :class:`Pacer` wait, on the event loop.

The budget is a sliding window, not a token bucket: a token bucket of N per W
lets 2N through in some window of length W (a full bucket, then its refill),
which a venue counting per window calls a violation.  A request counts from
the moment it is granted until it completes, and from its completion on for
one window: the venue counted it somewhere in between, so a window measured
from the completion covers the venue's.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import time
from collections import deque
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace

LOG = logging.getLogger(__name__)

# When a 429 names no wait, this long (then the backoff on top).
DEFAULT_RETRY_AFTER_S = 1.0
# When a ban (418/403) names no duration: Binance's shortest ban is 2 minutes.
DEFAULT_BAN_S = 120.0
# Statuses that mean "this IP is banned for a while" (Binance 418, Bybit 403).
BAN_STATUSES = (403, 418)
THROTTLED = 429


@dataclass(frozen=True)
class Rate:
    """At most ``limit`` units (weight, requests, messages) in any ``window_s`` seconds."""

    limit: int
    window_s: float

    def __post_init__(self) -> None:
        if self.limit <= 0 or self.window_s <= 0:
            raise ValueError(f"a rate needs a positive limit and window, got {self.limit} per {self.window_s} s")


@dataclass(frozen=True)
class EndpointWeight:
    """The weight of requests to ``path``: ``weight``, or by the value of query parameter ``param``.

    ``steps`` are (largest value, weight) in increasing order, as venues tabulate
    them (Binance depth: up to 100 levels weigh 5, up to 500 weigh 25, ...); a
    value above the last step weighs as the last step.
    """

    path: str
    weight: int = 1
    param: str = ""
    steps: tuple[tuple[int, int], ...] = ()

    def of(self, params: Mapping[str, str] | None) -> int:
        if not self.param or not self.steps:
            return self.weight
        raw = (params or {}).get(self.param)
        try:
            value = int(raw) if raw is not None else None
        except ValueError:
            value = None
        if value is None:
            return self.weight
        for largest, weight in self.steps:
            if value <= largest:
                return weight
        return self.steps[-1][1]


@dataclass(frozen=True)
class Limits:
    """A venue's documented public limits, per IP unless a field says otherwise.

    ``rest``: REST budgets, every one applies (e.g. 400/s and 10,000 per 10 min).
    ``weights``: per-endpoint weights where the venue weighs requests (others weigh 1).
    ``subscribes``: client messages (subscribes) per connection, or per IP when
    ``subscribes_per_ip``.  ``streams_per_connection``: topics one connection may
    carry (0: not documented).  ``connections``: new connections per window.
    ``topics_per_message``: topics one subscribe message may name (0: no limit).
    ``used_weight_header``: where the venue reports the weight used in its window.
    ``ban_s``: how long a ban lasts when the answer does not say.
    """

    rest: tuple[Rate, ...]
    subscribes: Rate
    connections: Rate
    streams_per_connection: int = 0
    topics_per_message: int = 0
    subscribes_per_ip: bool = False
    weights: tuple[EndpointWeight, ...] = ()
    used_weight_header: str = ""
    ban_s: float = DEFAULT_BAN_S

    def weight(self, path: str, params: Mapping[str, str] | None = None) -> int:
        """The weight a GET of ``path`` with ``params`` costs (1 where the venue weighs nothing)."""
        for endpoint in self.weights:
            if endpoint.path == path:
                return endpoint.of(params)
        return 1

    def overridden(self, values: Mapping[str, float]) -> Limits:
        """These limits with ``config.ini`` overrides (``[limits.<source>]``, see :data:`OVERRIDES`).

        Values are already checked (positive) by the configuration reader.
        """
        changes: dict[str, object] = {}
        rest = list(self.rest)
        if "rest_weight" in values or "rest_window_s" in values:
            first = rest[0]
            rest[0] = Rate(int(values.get("rest_weight", first.limit)), values.get("rest_window_s", first.window_s))
            changes["rest"] = tuple(rest)
        for name in ("subscribes", "connections"):
            rate: Rate = getattr(self, name)
            if f"{name}_per_window" in values or f"{name}_window_s" in values:
                changes[name] = Rate(
                    int(values.get(f"{name}_per_window", rate.limit)), values.get(f"{name}_window_s", rate.window_s)
                )
        for name in ("streams_per_connection", "topics_per_message"):
            if name in values:
                changes[name] = int(values[name])
        return replace(self, **changes)


# The options a ``[limits.<source>]`` section of config.ini may set (each must be greater than 0).
OVERRIDES = (
    "rest_weight",
    "rest_window_s",
    "subscribes_per_window",
    "subscribes_window_s",
    "connections_per_window",
    "connections_window_s",
    "streams_per_connection",
    "topics_per_message",
)


class Window:
    """One sliding-window budget: pure arithmetic on times the caller passes in."""

    def __init__(self, rate: Rate):
        self.rate = rate
        self._done: deque[tuple[float, int]] = deque()
        self._done_total = 0
        self.in_flight = 0

    def _expire(self, now: float) -> None:
        horizon = now - self.rate.window_s
        done = self._done
        while done and done[0][0] <= horizon:
            self._done_total -= done.popleft()[1]

    def used(self, now: float) -> int:
        """Units counted against the window at ``now``: in flight, and completed within the last window."""
        self._expire(now)
        return self.in_flight + self._done_total

    def delay(self, now: float, units: int) -> float | None:
        """Seconds until ``units`` fit (0: now); None when only a completion in flight can make room."""
        units = min(units, self.rate.limit)
        excess = self.used(now) + units - self.rate.limit
        if excess <= 0:
            return 0.0
        freed = 0
        for stamp, weight in self._done:
            freed += weight
            if freed >= excess:
                return stamp + self.rate.window_s - now
        return None

    def take(self, units: int) -> int:
        """Count ``units`` as in flight (call only after ``delay`` said 0); returns what was counted."""
        units = min(units, self.rate.limit)
        self.in_flight += units
        return units

    def complete(self, now: float, units: int) -> None:
        """``units`` taken earlier are done at ``now``: they count for one more window from here."""
        self.in_flight -= units
        self.record(now, units)

    def record(self, now: float, units: int) -> None:
        """Count ``units`` as done at ``now`` (e.g. weight the venue reports that we did not send)."""
        if units > 0:
            self._done.append((now, units))
            self._done_total += units


class Budget:
    """Several windows that all apply, plus a pause (Retry-After, a ban) before which nothing is granted."""

    def __init__(self, rates: tuple[Rate, ...]):
        self.windows = [Window(rate) for rate in rates]
        self.paused_until = 0.0

    def delay(self, now: float, units: int) -> float | None:
        """Seconds until ``units`` may be taken; None when it waits on a completion."""
        waits = [max(0.0, self.paused_until - now)]
        for window in self.windows:
            wait = window.delay(now, units)
            if wait is None:
                return None
            waits.append(wait)
        return max(waits)

    def take(self, units: int) -> list[int]:
        return [window.take(units) for window in self.windows]

    def complete(self, now: float, taken: list[int]) -> None:
        for window, units in zip(self.windows, taken, strict=True):
            window.complete(now, units)

    def pause(self, until: float) -> None:
        """Grant nothing before ``until`` (monotonic seconds); a later pause never shortens an earlier one."""
        self.paused_until = max(self.paused_until, until)

    def observe_used(self, now: float, used: int, window_s: float) -> None:
        """The venue reports ``used`` units in its window of ``window_s``: count what we did not see ourselves."""
        for window in self.windows:
            if window.rate.window_s == window_s:
                window.record(now, used - window.used(now))


def retry_after_s(value: str | None, now_epoch: float | None = None) -> float | None:
    """Seconds a ``Retry-After`` header asks for (delta-seconds or an HTTP date), None if absent or unreadable."""
    if not value:
        return None
    text = value.strip()
    try:
        return max(0.0, float(text))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    now = time.time() if now_epoch is None else now_epoch
    return max(0.0, when.timestamp() - now)


@dataclass
class RestCounts:
    """What one source's REST traffic met; read by metrics and tests (plain counts, bumped per request)."""

    requests: int = 0
    weight: int = 0
    throttled: int = 0
    bans: int = 0
    server_errors: int = 0
    timeouts: int = 0
    by_status: dict[int, int] = field(default_factory=dict)


class RestLimiter:
    """The one REST budget of a source process: every request takes its weight here first.

    ``slot(weight)`` waits (first come, first served) until the request fits
    every window and no pause or ban is running; the request counts until it
    completes and one window after.  Answers feed back: ``throttled`` (429),
    ``banned`` (418/403) and ``observe_used`` (a venue's used-weight header).
    """

    def __init__(self, name: str, limits: Limits, clock: Callable[[], float] = time.monotonic):
        self.name = name
        self.limits = limits
        self.clock = clock
        self.budget = Budget(limits.rest)
        self.counts = RestCounts()
        # 429s in a row (reset by a 200): the backoff after each grows with it.
        self.streak = 0
        self._lock = asyncio.Lock()
        self._changed = asyncio.Event()

    @asynccontextmanager
    async def slot(self, weight: int = 1) -> AsyncIterator[None]:
        """Hold ``weight`` of the budget for one request (public: backfills and any later REST use this)."""
        taken = await self._acquire(weight)
        try:
            yield
        finally:
            self.budget.complete(self.clock(), taken)
            self._changed.set()

    async def _acquire(self, weight: int) -> list[int]:
        async with self._lock:
            while True:
                wait = self.budget.delay(self.clock(), weight)
                if wait == 0:
                    break
                self._changed.clear()
                try:
                    await asyncio.wait_for(self._changed.wait(), wait)
                except TimeoutError:
                    pass
            self.counts.requests += 1
            self.counts.weight += weight
            return self.budget.take(weight)

    def throttled(self, retry_after: float | None, backoff_s: float) -> float:
        """A 429: nothing more goes out for the venue's ``Retry-After`` plus ``backoff_s``; the pause in s."""
        self.counts.throttled += 1
        pause = (DEFAULT_RETRY_AFTER_S if retry_after is None else retry_after) + backoff_s
        self.budget.pause(self.clock() + pause)
        self._changed.set()
        LOG.warning("%s: REST answered 429 (rate limited): all REST waits %.1f s", self.name, pause)
        return pause

    def banned(self, status: int, retry_after: float | None) -> float:
        """A ban (418/403): all REST of this source stops for its duration; the duration in s."""
        self.counts.bans += 1
        duration = self.limits.ban_s if retry_after is None else retry_after
        self.budget.pause(self.clock() + duration)
        self._changed.set()
        LOG.error(
            "%s: REST banned (HTTP %d): every REST request of this source stops for %.0f s, until %s UTC",
            self.name, status, duration, time.strftime("%H:%M:%S", time.gmtime(time.time() + duration)),
        )
        return duration

    def observe_used(self, used: int) -> None:
        """The venue's own count of weight used in its first window (e.g. ``X-MBX-USED-WEIGHT-1M``)."""
        self.budget.observe_used(self.clock(), used, self.limits.rest[0].window_s)


class Pacer:
    """Paces messages (subscribes) under a :class:`Rate`: ``await pacer.wait()`` before each send."""

    def __init__(self, rate: Rate, clock: Callable[[], float] = time.monotonic):
        self.window = Window(rate)
        self.clock = clock
        self._lock = asyncio.Lock()

    async def wait(self) -> None:
        async with self._lock:
            await self._room()
            self.window.record(self.clock(), 1)

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """One unit held from its grant until the block ends, then for one window after (a connection
        handshake: the venue counts it when it arrives, somewhere in between, so no window of the venue's
        can hold more than the rate, however late a handshake arrives)."""
        async with self._lock:
            await self._room()
            self.window.take(1)
        try:
            yield
        finally:
            self.window.complete(self.clock(), 1)

    async def _room(self) -> None:
        while (delay := self.window.delay(self.clock(), 1)) != 0:
            await asyncio.sleep(delay or self.window.rate.window_s)
