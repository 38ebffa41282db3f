"""CORS for the public widget API (``/v1/widget/``), without credentials mode.

A response names the page's origin in ``Access-Control-Allow-Origin`` only when the
request's channel allows that origin: the widget authentication (app/webchat/auth.py)
records it on the request once it has checked it, and this middleware adds the headers
as the response starts (errors included, so the widget can read a 401 or a 429).

A preflight cannot be checked per channel: browsers send it without the widget key or
the token. It is answered for any well-formed origin; the request itself is then
checked, and its response readable only by an allowed origin.
"""

from __future__ import annotations

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.webchat.auth import CORS_STATE
from app.webchat.origins import browser_origin

PREFIX = "/v1/widget/"
ALLOW_METHODS = b"GET, POST, OPTIONS"
ALLOW_HEADERS = b"Authorization, Content-Type, X-Widget-Key, X-Request-ID"
EXPOSE_HEADERS = b"Retry-After, X-Request-ID, Location"
MAX_AGE = b"600"


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", []):
        if key == name:
            return str(value.decode("latin-1"))
    return None


class WidgetCorsMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(PREFIX):
            await self.app(scope, receive, send)
            return
        origin_header = _header(scope, b"origin")
        if scope["method"] == "OPTIONS" and _header(scope, b"access-control-request-method"):
            await self._preflight(browser_origin(origin_header), origin_header, send)
            return

        async def send_with_cors(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"vary", b"Origin"))
                allowed = scope.get("state", {}).get(CORS_STATE)
                if allowed and browser_origin(origin_header) == allowed and origin_header:
                    headers.append((b"access-control-allow-origin", origin_header.encode()))
                    headers.append((b"access-control-expose-headers", EXPOSE_HEADERS))
                message["headers"] = headers
            await send(message)

        await self.app(scope, receive, send_with_cors)

    @staticmethod
    async def _preflight(origin: str | None, raw_origin: str | None, send: Send) -> None:
        headers = [(b"vary", b"Origin"), (b"content-length", b"0")]
        if origin is not None and raw_origin:
            headers += [
                (b"access-control-allow-origin", raw_origin.encode("latin-1")),
                (b"access-control-allow-methods", ALLOW_METHODS),
                (b"access-control-allow-headers", ALLOW_HEADERS),
                (b"access-control-max-age", MAX_AGE),
            ]
        await send({"type": "http.response.start", "status": 204, "headers": headers})
        await send({"type": "http.response.body", "body": b""})
