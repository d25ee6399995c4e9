"""How the simulator and the replay server say no, as venues do.

REST: past a budget of requests per window the answer is 429 with a
``Retry-After`` (whole seconds, as HTTP has it); a client that keeps earning
429s (``ban_after`` of them within ``ban_window_s``) is banned: 418 with the
ban's ``Retry-After`` to everything until it ends (Binance's rules,
https://developers.binance.com/docs/binance-spot-api-docs/rest-api/limits).
Requests that arrive while a client was told to wait are counted (``early``):
a well-behaved client never sends one.

WebSocket: a connection that sends more than ``subscribe_limit`` messages in
``subscribe_window_s`` is closed with 1008 (policy violation), as Binance closes
one past its 5 messages a second.  More than ``connection_limit`` websocket
handshakes in ``connection_window_s`` are refused with 429 and a
``Retry-After`` before the upgrade (:class:`ConnectionGate`), as venues limit
connection requests per IP (Coinbase: 8 per second; OKX: 3 per second).

The decisions are pure (the caller passes the time); :func:`rest_middleware`
puts a :class:`RestGate` in front of an aiohttp application's REST routes.
"""

from __future__ import annotations

import argparse
import math
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field

from aiohttp import web

from l3_atom.errors import UserError

THROTTLED = 429
BANNED = 418
POLICY_VIOLATION = 1008
DEFAULT_BAN_AFTER = 0
DEFAULT_BAN_S = 60.0
DEFAULT_BAN_WINDOW_S = 60.0


@dataclass
class GateCounts:
    """What the gate answered; ``early`` counts requests sent before a ``Retry-After`` had passed."""

    served: int = 0
    throttled: int = 0
    banned: int = 0
    bans: int = 0
    early: int = 0
    during_ban: int = 0
    subscribe_closes: int = 0
    # Websocket handshakes let through, and refused (429) past the connection limit.
    connections: int = 0
    connections_refused: int = 0
    # Each 429/418 answer: [monotonic time, status, seconds the client was told to wait].
    answers: list[list[float]] = field(default_factory=list)


class RestGate:
    """A REST budget of ``limit`` requests per ``window_s`` (0: no limit), with bans for repeat offenders."""

    def __init__(
        self,
        limit: int = 0,
        window_s: float = 1.0,
        ban_after: int = DEFAULT_BAN_AFTER,
        ban_s: float = DEFAULT_BAN_S,
        ban_window_s: float = DEFAULT_BAN_WINDOW_S,
    ):
        if limit < 0 or window_s <= 0 or ban_after < 0 or ban_s <= 0 or ban_window_s <= 0:
            raise ValueError("REST gate: limit and ban_after must be 0 or more, windows and ban_s positive")
        self.limit = limit
        self.window_s = window_s
        self.ban_after = ban_after
        self.ban_s = ban_s
        self.ban_window_s = ban_window_s
        self.counts = GateCounts()
        # The websocket handshakes' gate (no limit unless :func:`gates` sets one); it counts in ``counts``.
        self.connections = ConnectionGate(counts=self.counts)
        self._served: deque[float] = deque()
        self._throttles: deque[float] = deque()
        self._wait_until = 0.0
        self._banned_until = 0.0

    def answer(self, now: float) -> tuple[int, int] | None:
        """None: serve the request; else (status, Retry-After seconds) to answer instead."""
        if now < self._banned_until:
            self.counts.during_ban += 1
            return self._refuse(now, BANNED, self._banned_until - now)
        if not self.limit:
            self.counts.served += 1
            return None
        if now < self._wait_until:
            self.counts.early += 1
            return self._throttle(now, self._wait_until - now)
        served = self._served
        while served and served[0] <= now - self.window_s:
            served.popleft()
        if len(served) >= self.limit:
            return self._throttle(now, served[0] + self.window_s - now)
        served.append(now)
        self.counts.served += 1
        return None

    def _throttle(self, now: float, wait: float) -> tuple[int, int]:
        throttles = self._throttles
        throttles.append(now)
        while throttles[0] <= now - self.ban_window_s:
            throttles.popleft()
        if self.ban_after and len(throttles) >= self.ban_after:
            throttles.clear()
            self.counts.bans += 1
            self._banned_until = now + self.ban_s
            return self._refuse(now, BANNED, self.ban_s)
        return self._refuse(now, THROTTLED, wait)

    def _refuse(self, now: float, status: int, wait: float) -> tuple[int, int]:
        seconds = max(1, math.ceil(wait))
        if status == THROTTLED:
            self.counts.throttled += 1
            self._wait_until = max(self._wait_until, now + seconds)
        else:
            self.counts.banned += 1
        self.counts.answers.append([now, status, seconds])
        return status, seconds

    def stats(self) -> dict:
        return asdict(self.counts)


class ConnectionGate:
    """New websocket connections: more than ``limit`` handshakes within ``window_s`` are refused (0: no limit)."""

    def __init__(self, limit: int = 0, window_s: float = 1.0, counts: GateCounts | None = None):
        if limit < 0 or window_s <= 0:
            raise ValueError("connection gate: the limit must be 0 or more and the window greater than 0")
        self.limit = limit
        self.window_s = window_s
        self.counts = counts or GateCounts()
        self._accepted: deque[float] = deque()

    def answer(self, now: float) -> int | None:
        """None: accept the handshake; else the ``Retry-After`` seconds of a 429 refusal."""
        accepted = self._accepted
        while accepted and accepted[0] <= now - self.window_s:
            accepted.popleft()
        if self.limit and len(accepted) >= self.limit:
            self.counts.connections_refused += 1
            return max(1, math.ceil(accepted[0] + self.window_s - now))
        accepted.append(now)
        self.counts.connections += 1
        return None

    def refusal(self) -> web.Response | None:
        """The 429 answer to a handshake arriving now past the limit, or None to go on with the upgrade."""
        retry_after = self.answer(time.monotonic())
        if retry_after is None:
            return None
        return web.json_response({"message": "Too many connection requests"}, status=THROTTLED,
                                 headers={"Retry-After": str(retry_after)})


class SubscribeGate:
    """One connection's client messages: more than ``limit`` within ``window_s`` and it is closed (0: no limit)."""

    def __init__(self, limit: int = 0, window_s: float = 1.0):
        self.limit = limit
        self.window_s = window_s
        self._sent: deque[float] = deque()

    def allows(self, now: float) -> bool:
        if not self.limit:
            return True
        sent = self._sent
        sent.append(now)
        while sent[0] <= now - self.window_s:
            sent.popleft()
        return len(sent) <= self.limit


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def rest_middleware(gate: RestGate, exempt: Callable[[web.Request], bool]) -> Callable:
    """aiohttp middleware: REST requests (those ``exempt`` does not pass) go through ``gate`` first."""

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        if exempt(request):
            return await handler(request)
        refused = gate.answer(time.monotonic())
        if refused is None:
            return await handler(request)
        status, retry_after = refused
        message = "Too many requests" if status == THROTTLED else "IP banned for too many requests"
        return web.json_response({"message": message}, status=status, headers={"Retry-After": str(retry_after)})

    return middleware


def is_websocket(request: web.Request) -> bool:
    return request.headers.get("Upgrade", "").lower() == "websocket"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Flags of both servers: how they say no."""
    group = parser.add_argument_group("limits", "answer as venues do past their limits (0: no limit)")
    group.add_argument("--rest-limit", type=int, default=0, metavar="N", help="REST requests per window")
    group.add_argument("--rest-window", type=float, default=1.0, metavar="S", help="REST window in s (default 1)")
    group.add_argument("--ban-after", type=int, default=DEFAULT_BAN_AFTER, metavar="N",
                       help="418 ban after N 429s within --ban-window (0: never ban)")
    group.add_argument("--ban-s", type=float, default=DEFAULT_BAN_S, metavar="S", help="ban duration in s")
    group.add_argument("--ban-window", type=float, default=DEFAULT_BAN_WINDOW_S, metavar="S",
                       help="window in s over which 429s are counted toward a ban")
    group.add_argument("--subscribe-limit", type=int, default=0, metavar="N",
                       help="client messages per --subscribe-window on one connection; past it the connection closes")
    group.add_argument("--subscribe-window", type=float, default=1.0, metavar="S", help="subscribe window in s")
    group.add_argument("--connection-limit", type=int, default=0, metavar="N",
                       help="websocket handshakes per --connection-window; past it the handshake is refused with 429")
    group.add_argument("--connection-window", type=float, default=1.0, metavar="S", help="connection window in s")


def gates(args: argparse.Namespace) -> tuple[RestGate, SubscribeGateFactory]:
    """The REST gate and the per-connection subscribe gates :func:`add_arguments`' flags ask for."""
    if args.subscribe_limit < 0 or args.subscribe_window <= 0:
        raise UserError("--subscribe-limit must be 0 or more and --subscribe-window greater than 0")
    try:
        rest = RestGate(args.rest_limit, args.rest_window, args.ban_after, args.ban_s, args.ban_window)
    except ValueError as exc:
        raise UserError(f"{exc} (--rest-limit, --rest-window, --ban-after, --ban-s, --ban-window)") from None
    try:
        rest.connections = ConnectionGate(args.connection_limit, args.connection_window, rest.counts)
    except ValueError as exc:
        raise UserError(f"{exc} (--connection-limit, --connection-window)") from None
    return rest, SubscribeGateFactory(args.subscribe_limit, args.subscribe_window)


@dataclass(frozen=True)
class SubscribeGateFactory:
    """Makes one :class:`SubscribeGate` per connection."""

    limit: int = 0
    window_s: float = 1.0

    def __call__(self) -> SubscribeGate:
        return SubscribeGate(self.limit, self.window_s)
