"""WeChat access tokens: the per-process ``TokenCache``, fetching the stable token
(``POST /cgi-bin/stable_token``, forcing a new one only when WeChat keeps handing out
the one it refused), WeChat's errcode answers as ``ProviderError`` with the call's
secrets scrubbed, and the filter that keeps the app secret and access tokens out of
httpx's request logs.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

import httpx

from app.messaging.providers.base import (
    ProviderError,
    json_answer,
    retryable_status,
    transport_error,
)

PROVIDER = "wechat"
# errcodes meaning "this access token is no good" (expired, invalid, replaced).
TOKEN_ERRORS = frozenset({40001, 40014, 42001})
# errcodes meaning "later": system busy, API call quota.
_RETRYABLE = frozenset({-1, 45009, 45011})
# A forced stable_token refresh refused: within 30 s of the last, or 20 in a day.
_FORCE_REFUSED = 45009
# Refresh a token this long before WeChat says it expires.
_TOKEN_MARGIN = 300


# -- access tokens ------------------------------------------------------------------------


@dataclass
class _Token:
    value: str
    expires: float  # time.monotonic()


class TokenCache:
    """Access tokens per (API base, AppID, secret digest), in this process. The digest
    in the key means a rotated secret fetches afresh, and nobody uses a token without
    holding the secret it was fetched with.

    It also remembers, per key, the last token WeChat refused: a fetch that answers that
    same token again (WeChat still hands it out) is what justifies forcing a new one."""

    def __init__(self) -> None:
        self._tokens: dict[tuple[str, str, str], _Token] = {}
        self._refused: dict[tuple[str, str, str], str] = {}

    @staticmethod
    def key(base: str, appid: str, secret: str) -> tuple[str, str, str]:
        return (base, appid, hashlib.sha256(secret.encode()).hexdigest())

    def get(self, key: tuple[str, str, str]) -> str | None:
        token = self._tokens.get(key)
        if token is None or token.expires <= time.monotonic():
            return None
        return token.value

    def put(self, key: tuple[str, str, str], value: str, expires_in: float) -> None:
        life = max(expires_in - _TOKEN_MARGIN, min(expires_in, 60.0))
        self._tokens[key] = _Token(value, time.monotonic() + life)
        if self._refused.get(key) != value:
            self._refused.pop(key, None)

    def refuse(self, key: tuple[str, str, str], value: str) -> None:
        """WeChat called ``value`` expired or invalid: forget it (if it is still the one
        cached) and remember it as refused."""
        token = self._tokens.get(key)
        if token is not None and token.value == value:
            del self._tokens[key]
        self._refused[key] = value

    def refused(self, key: tuple[str, str, str], value: str) -> bool:
        """Whether ``value`` is the last token WeChat refused for this key."""
        return self._refused.get(key) == value


# The process's cache, shared by every adapter that is not handed its own.
TOKENS = TokenCache()


# -- fetching -----------------------------------------------------------------------------


async def fetch_token(
    tokens: TokenCache, client: httpx.AsyncClient, base: str, appid: str, secret: str
) -> tuple[tuple[str, str, str], str]:
    """The cache key and the app's access token: the cached one, else a fetched one."""
    key = tokens.key(base, appid, secret)
    cached = tokens.get(key)
    if cached is not None:
        return key, cached
    token, life = await _stable_token(client, base, appid, secret, force=False)
    if tokens.refused(key, token):
        # WeChat still hands out the token it refuses: only a forced refresh helps.
        token, life = await _forced_token(tokens, client, key, base, appid, secret)
    tokens.put(key, token, life)
    return key, token


async def _forced_token(
    tokens: TokenCache,
    client: httpx.AsyncClient,
    key: tuple[str, str, str],
    base: str,
    appid: str,
    secret: str,
) -> tuple[str, float]:
    try:
        return await _stable_token(client, base, appid, secret, force=True)
    except _Refused as exc:
        if exc.errcode != _FORCE_REFUSED:
            raise
        # Forced refreshes are 30 s apart at least: another replica may have just
        # forced one, and its token is then what the normal mode answers.
        token, life = await _stable_token(client, base, appid, secret, force=False)
        if tokens.refused(key, token):
            # The dispatcher's first retry comes 30 s later: past WeChat's interval.
            raise ProviderError(
                PROVIDER,
                "access token: WeChat refuses the token it hands out, and refused to "
                f"force a new one: {exc.reason}",
                retryable=True,
            ) from None
        return token, life


async def _stable_token(
    client: httpx.AsyncClient, base: str, appid: str, secret: str, *, force: bool
) -> tuple[str, float]:
    """``POST /cgi-bin/stable_token``: the app's current token and its remaining
    life in seconds."""
    payload = {
        "grant_type": "client_credential",
        "appid": appid,
        "secret": secret,
        "force_refresh": force,
    }
    what = "access token (forced)" if force else "access token"
    try:
        r = await client.post(f"{base}/cgi-bin/stable_token", json=payload)
    except httpx.HTTPError as exc:
        raise transport_error(PROVIDER, exc) from exc
    body = answer(r, f"{what}: ")
    token = body.get("access_token")
    if not isinstance(token, str) or not token or body.get("errcode", 0) != 0:
        raise refused(body, what, secret)
    expires_in = body.get("expires_in")
    life = float(expires_in) if isinstance(expires_in, int | float) and expires_in > 0 else 7200
    return token, life


# -- WeChat's answers ---------------------------------------------------------------------


def answer(r: httpx.Response, what: str = "") -> dict[str, Any]:
    """The JSON object of an HTTP 200 answer; ProviderError for any other status."""
    if r.status_code != 200:
        raise ProviderError(
            PROVIDER,
            f"{what}HTTP {r.status_code}",
            retryable=retryable_status(r.status_code),
        )
    return json_answer(PROVIDER, r)


def refused(body: dict[str, Any], what: str, *secrets: str) -> _Refused:
    """WeChat's errcode answer as a ProviderError; an errmsg may echo the request, so
    the secrets the call used are scrubbed from it."""
    code = body.get("errcode")
    message = body.get("errmsg")
    reason = f"errcode {code}" + (f": {message}" if isinstance(message, str) else "")
    return _Refused(code, _scrub(reason, *secrets), what)


class _Refused(ProviderError):
    """An errcode answer; ``errcode`` and ``reason`` for the adapter's own decisions."""

    def __init__(self, errcode: object, reason: str, what: str) -> None:
        super().__init__(PROVIDER, f"{what}: {reason}", retryable=errcode in _RETRYABLE)
        self.errcode = errcode
        self.reason = reason


# -- logging ------------------------------------------------------------------------------

# Query parameters and JSON body fields that hold a credential: the app secret (the
# stable_token body) and the access token (the query of every other call).
_SECRET_PARAMS = ("secret", "access_token")


class _RedactUrls(logging.Filter):
    """httpx logs every request's URL at INFO; WeChat's carry the access token in the
    query, and the token call carries the app secret in its JSON body. Blank both out of
    any URL, request or body a record carries."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(_redact_arg(arg) for arg in record.args)
        return True


def _redact_arg(arg: object) -> object:
    if isinstance(arg, httpx.URL):
        return _redact(arg)
    if isinstance(arg, httpx.Request):  # its repr holds the URL; the body stays unread
        return f"<Request({arg.method!r}, '{_redact(arg.url)}')>"
    if isinstance(arg, bytes | str):
        return _redact_body(arg)
    return arg


def _redact(url: httpx.URL) -> httpx.URL:
    for name in _SECRET_PARAMS:
        if name in url.params:
            url = url.copy_set_param(name, "REDACTED")
    return url


def _redact_body(body: bytes | str) -> bytes | str:
    """A JSON object body with its credential fields blanked; anything else as it is."""
    if body[:1] not in (b"{", "{"):
        return body
    try:
        data = json.loads(body)
    except ValueError:
        return body
    if not isinstance(data, dict) or not any(name in data for name in _SECRET_PARAMS):
        return body
    data.update({name: "REDACTED" for name in _SECRET_PARAMS if name in data})
    text = json.dumps(data, ensure_ascii=False)
    return text.encode() if isinstance(body, bytes) else text


def _scrub(text: str, *secrets: str) -> str:
    """``text`` (an errmsg of WeChat's) with any of ``secrets`` in it blanked."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "REDACTED")
    return text


def _install_redaction() -> None:
    logger = logging.getLogger("httpx")
    if not any(isinstance(f, _RedactUrls) for f in logger.filters):
        logger.addFilter(_RedactUrls())


_install_redaction()
