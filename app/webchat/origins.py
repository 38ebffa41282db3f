"""Which web pages may use a web chat channel: the browser's ``Origin`` against the
channel's ``allowed_origins`` (exact, or ``https://*.example.com`` for any subdomain of
example.com, not example.com itself; the scheme and port must match too)."""

from __future__ import annotations

from collections.abc import Iterable
from urllib.parse import urlsplit

from app.channels.validation import normalise_origin


def browser_origin(value: str | None) -> str | None:
    """An ``Origin`` header as channel settings spell origins, or None when absent,
    ``null`` (sandboxed frames, file: pages) or not an origin. A wildcard is a setting,
    never an origin a browser sends."""
    if not value or "*" in value:
        return None
    try:
        return normalise_origin(value.strip())
    except ValueError:
        return None


def origin_of_url(url: str) -> str | None:
    """The origin of an absolute http(s) URL, normalised; None for anything else."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    return browser_origin(f"{parts.scheme}://{parts.hostname}" + (f":{port}" if port else ""))


def _split(origin: str) -> tuple[str, str, str]:
    scheme, _, rest = origin.partition("://")
    host, _, port = rest.partition(":")
    return scheme, host, port


def origin_allowed(origin: str | None, allowed: Iterable[str]) -> bool:
    if origin is None:
        return False
    scheme, host, port = _split(origin)
    for entry in allowed:
        if entry == origin:
            return True
        e_scheme, e_host, e_port = _split(entry)
        if (
            e_host.startswith("*.")
            and e_scheme == scheme
            and e_port == port
            and host.endswith(e_host[1:])
            and len(host) > len(e_host) - 1
        ):
            return True
    return False
