"""One HTTP port per role: ``/metrics`` (Prometheus text), ``/health`` (liveness), ``/ready`` (readiness).

The port is bound synchronously before the role starts (:func:`bind_metrics_socket`), so a port in
use stops the command at once with a one-line error, and served by aiohttp on the role's own event
loop: ``/health`` answering proves that loop runs.  ``/ready`` calls a cheap, synchronous check that
only reads state (never waits), and neither it nor ``/metrics`` raises during startup or shutdown:
a failing check answers 503 with the reason.
"""

from __future__ import annotations

import argparse
import logging
import socket
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from l3_atom.errors import UserError

LOG = logging.getLogger(__name__)
METRICS_PATH = "/metrics"
HEALTH_PATH = "/health"
READY_PATH = "/ready"
HTTP_OK = 200
HTTP_UNAVAILABLE = 503
SHUTDOWN_TIMEOUT_S = 2.0
LISTEN_BACKLOG = 128

# The metrics port that means "serve no metrics" (``--no-metrics``: the bench measures what they cost).
METRICS_OFF = -1
# Reasons the role is not ready; empty when it is.
ReadyCheck = Callable[[], list[str]]


def add_metrics_port(parser: argparse.ArgumentParser) -> None:
    """``--metrics-port``: where a role serves /metrics, /health and /ready."""
    parser.add_argument(
        "--metrics-port", type=int, help="serve /metrics, /health, /ready here (0: a free port; default: config.ini)"
    )
    parser.add_argument(
        "--no-metrics", dest="metrics", action="store_false", help="serve no metrics (to measure what they cost)"
    )


def chosen_metrics_port(args: argparse.Namespace) -> int | None:
    """The port the options ask for: ``METRICS_OFF`` with ``--no-metrics``, None for the configured one."""
    return args.metrics_port if args.metrics else METRICS_OFF


def metrics_handler(registry: CollectorRegistry, role: str) -> Callable[[web.Request], Awaitable[web.Response]]:
    """The ``/metrics`` view of ``registry``, for any role's aiohttp app; a failing scrape answers 503."""

    async def metrics(_request: web.Request) -> web.Response:
        try:
            body = generate_latest(registry)
        except Exception as exc:  # noqa: BLE001 - a scrape must never take the role down
            LOG.warning("%s: metrics scrape failed: %r", role, exc)
            return web.Response(status=HTTP_UNAVAILABLE, text=f"metrics unavailable: {exc!r}\n")
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    return metrics


class MetricsPortInUse(UserError):
    """The metrics port is taken: the message names the port and how to choose another."""


def bind_metrics_socket(host: str, port: int, role: str) -> socket.socket | None:
    """A listening socket on ``host:port`` (0: a free port), bound now so a clash is reported up front.

    None for ``METRICS_OFF``: the role then serves no metrics.
    """
    if port == METRICS_OFF:
        return None
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.bind((host, port))
        sock.listen(LISTEN_BACKLOG)
    except OSError as exc:
        sock.close()
        raise MetricsPortInUse(
            f"metrics port {host}:{port} is not available ({exc.strerror}); choose another with "
            f"--metrics-port (0 picks a free one) or [metrics] {role}_port in config.ini"
        ) from None
    sock.setblocking(False)
    return sock


class MetricsServer:
    """Serves one registry and one readiness check on an already bound socket."""

    def __init__(self, sock: socket.socket, registry: CollectorRegistry, ready: ReadyCheck, role: str):
        self.sock = sock
        self.registry = registry
        self.ready = ready
        self.role = role
        self._runner: web.AppRunner | None = None

    @property
    def address(self) -> str:
        host, port = self.sock.getsockname()[:2]
        return f"http://{host}:{port}"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get(METRICS_PATH, metrics_handler(self.registry, self.role))
        app.router.add_get(HEALTH_PATH, self._health)
        app.router.add_get(READY_PATH, self._ready)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT_S)
        await self._runner.setup()
        await web.SockSite(self._runner, self.sock).start()
        LOG.info("%s: metrics, /health and /ready on %s", self.role, self.address)

    async def stop(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    async def _health(self, _request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "role": self.role})

    async def _ready(self, _request: web.Request) -> web.Response:
        try:
            reasons = self.ready()
        except Exception as exc:  # noqa: BLE001 - starting or stopping: not ready, and say why
            reasons = [f"readiness check failed: {exc!r}"]
        status = HTTP_UNAVAILABLE if reasons else HTTP_OK
        return web.json_response({"ready": not reasons, "role": self.role, "reasons": reasons}, status=status)
