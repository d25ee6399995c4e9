"""What every role's aiohttp app shares: starting it on an address, and its ``/health`` and ``/ready`` probes."""

from __future__ import annotations

from collections.abc import Callable

from aiohttp import web

from l3_atom.errors import UserError

HTTP_OK = 200
HTTP_UNAVAILABLE = 503
SHUTDOWN_TIMEOUT_S = 2.0

# (ready, detail) of one part of a role; /ready answers 200 only when every check is ready.
ReadyCheck = Callable[[], tuple[bool, str]]


async def serve_app(app: web.Application, host: str, port: int) -> web.AppRunner:
    """Serve ``app`` on ``host:port`` (port 0: a free one, see ``runner.addresses``); a busy port is the user's to fix."""
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=SHUTDOWN_TIMEOUT_S)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
    except OSError as exc:
        await runner.cleanup()
        raise UserError(f"cannot serve on {host}:{port}: {exc.strerror or exc}") from None
    return runner


def add_probes(app: web.Application, checks: dict[str, ReadyCheck]) -> None:
    """``/health`` (the process answers) and ``/ready`` (every named check holds); add checks to extend."""

    async def health(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def ready(_request: web.Request) -> web.Response:
        results = {name: check() for name, check in checks.items()}
        ok = all(done for done, _ in results.values())
        body = {
            "ready": ok,
            "checks": {name: {"ready": done, "detail": detail} for name, (done, detail) in results.items()},
        }
        return web.json_response(body, status=HTTP_OK if ok else HTTP_UNAVAILABLE)

    app.router.add_get("/health", health)
    app.router.add_get("/ready", ready)
