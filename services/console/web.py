"""The web dashboard: static files (services/console/static, package data) served at `/`, with
a content security policy that lets the page reach only this origin (no CDN, no inline script)."""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

STATIC = Path(__file__).parent / "static"
POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)
HEADERS = {
    "Content-Security-Policy": POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


async def _index(_request: Request) -> Response:
    return FileResponse(STATIC / "index.html", headers=HEADERS)


class _Static(StaticFiles):
    """The dashboard's scripts and styles, with the same headers as the page."""

    def file_response(self, *args: object, **kwargs: object) -> Response:
        response = super().file_response(*args, **kwargs)  # type: ignore[arg-type]
        response.headers.update(HEADERS)
        return response


def routes() -> list[BaseRoute]:
    """`/` (the page) and `/static/…` (its modules and stylesheet); not in the API document."""
    return [Route("/", _index, methods=["GET"]), Mount("/static", _Static(directory=STATIC), name="static")]
