"""Building webhook requests the way providers send them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode

from app.messaging.providers.base import WebhookCheck, WebhookRequest

MAX_AGE = timedelta(seconds=300)


def now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def request(
    url: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
    method: str = "POST",
) -> WebhookRequest:
    return WebhookRequest(method=method, url=url, headers=headers or {}, body=body)


def check(
    credentials: dict[str, str] | None = None,
    webhook_secret: str | None = None,
    max_age: timedelta = MAX_AGE,
) -> WebhookCheck:
    """What ingress checks a request against, at the time now."""
    return WebhookCheck(credentials or {}, webhook_secret, now(), max_age)


def form_body(params: list[tuple[str, str]] | dict[str, str]) -> bytes:
    return urlencode(params).encode()
