"""The live viewer page: plain HTML, JavaScript and CSS served from this package (no build step).

``register`` adds it to an aiohttp app that also serves the websocket stream
(``/ws``): ``runner.py gateway`` and ``runner.py local --serve``.  The page
loads nothing from elsewhere: no CDN, no web fonts.
"""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

STATIC_DIR = Path(__file__).resolve().parent / "static"
PAGE_PATH = "/"
ASSETS_PATH = "/viewer"


def register(app: web.Application) -> None:
    """Serve the page at ``/`` and its script and style under ``/viewer/``."""

    async def page(_request: web.Request) -> web.FileResponse:
        return web.FileResponse(STATIC_DIR / "index.html")

    app.router.add_get(PAGE_PATH, page)
    app.router.add_static(ASSETS_PATH, STATIC_DIR)
