"""Inbound media: the files a customer's message names, fetched from the provider into
bytes the conversation core stores (``AttachmentIn``).

- Twilio: ``MediaUrl`` under the account's own API path, with HTTP basic auth (the
  AccountSid and auth token); Twilio redirects to its CDN, and httpx drops the
  Authorization header on a redirect to another origin.
- WhatsApp Cloud API: the media id resolves through ``GET {graph}/{media id}`` (bearer)
  to a short-lived URL, fetched with the same bearer; its sha256 is checked.
- Messenger: the attachment URL of the payload (Meta's CDN), fetched without credentials.
- WeChat: ``GET /cgi-bin/media/get`` with the access token (videos answer a
  ``video_url`` to fetch instead).

Only URLs at the provider are fetched: the payload is signed, but with the tenant's own
secret, so a URL in it must not reach into our network (the Twilio URL must be under
the account's API path, Messenger's on Meta's CDN hosts), and every redirect is checked
again before it is followed: Meta's files only within Meta's hosts, Twilio's and
WeChat's (whose CDNs they pick) only to https. Every file is capped at
``settings.attachment_max_bytes`` while it streams, and its type must be in
``settings.attachment_content_types``. A file that fails or is refused becomes a note in
the message text ("[attachment not accepted: reason]"): the message is never lost for it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import mimetypes
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import httpx

from app.config import Settings
from app.conversations.service import AttachmentIn
from app.messaging.providers import MediaRef, ProviderError, api_base
from app.messaging.providers.wechat import WeChatAdapter

log = logging.getLogger("switchboard.messaging.media")

# Meta serves attachment files from these (and their subdomains).
META_MEDIA_HOSTS = ("fbcdn.net", "fbsbx.com", "facebook.com", "fb.com", "whatsapp.net")
_DISPOSITION_NAME = re.compile(r"""filename\*?=(?:UTF-8'')?"?([^";]+)"?""", re.IGNORECASE)
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9._-]+")
_TIMEOUT = httpx.Timeout(20.0, connect=5.0)


class MediaRefused(Exception):
    """A file we did not keep; ``reason`` is for the note in the message text and never
    holds a URL or a credential."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class FetchedMedia:
    attachments: list[AttachmentIn] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def annotate(self, text: str) -> str:
        """``text`` with a note per file that was not kept."""
        lines = [f"[attachment not accepted: {reason}]" for reason in self.notes]
        return "\n".join(t for t in (text, *lines) if t)


_HTTP: httpx.AsyncClient | None = None


def http_client() -> httpx.AsyncClient:
    """One pooled client per process for media downloads."""
    global _HTTP
    if _HTTP is None or _HTTP.is_closed:
        _HTTP = httpx.AsyncClient(timeout=_TIMEOUT)
    return _HTTP


# -- downloading ------------------------------------------------------------------------


@dataclass(frozen=True)
class _File:
    data: bytes
    content_type: str | None
    filename: str | None


def _media_type(value: str | None) -> str | None:
    if not value:
        return None
    kind = value.split(";", 1)[0].strip().lower()
    return kind or None


_REDIRECTS = (301, 302, 303, 307, 308)
_MAX_REDIRECTS = 5


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme, parts.netloc.lower()


async def _download(
    http: httpx.AsyncClient,
    url: str,
    *,
    max_bytes: int,
    allowed: Callable[[str], bool],
    headers: Mapping[str, str] | None = None,
    auth: tuple[str, str] | None = None,
    params: Mapping[str, str] | None = None,
) -> _File:
    """GET ``url``, following redirects only to URLs ``allowed`` accepts (each hop is
    checked: an open redirect on an allowed host must not lead into our network) and
    dropping the credentials when one leaves the origin; refusing a body over
    ``max_bytes`` as it streams (a declared Content-Length over the cap before reading)."""
    first = _origin(url)
    try:
        for _ in range(_MAX_REDIRECTS + 1):
            same = _origin(url) == first
            async with http.stream(
                "GET",
                url,
                headers=dict(headers or {}) if same else {},
                auth=auth if same else None,
                params=dict(params or {}),
                follow_redirects=False,
            ) as r:
                if r.status_code in _REDIRECTS and r.headers.get("location"):
                    url = str(r.url.join(r.headers["location"]))
                    params = None  # the Location carries its own query
                    if not allowed(url):
                        raise MediaRefused("the file was redirected off the provider's hosts")
                    continue
                if r.status_code != 200:
                    raise MediaRefused(f"the provider answered HTTP {r.status_code}")
                declared = r.headers.get("content-length")
                if declared and declared.isdigit() and int(declared) > max_bytes:
                    raise MediaRefused(f"larger than {max_bytes} bytes")
                data = bytearray()
                async for chunk in r.aiter_bytes():
                    data += chunk
                    if len(data) > max_bytes:
                        raise MediaRefused(f"larger than {max_bytes} bytes")
                disposition = _DISPOSITION_NAME.search(r.headers.get("content-disposition", ""))
                return _File(
                    bytes(data),
                    _media_type(r.headers.get("content-type")),
                    disposition.group(1) if disposition else None,
                )
    except httpx.HTTPError as exc:
        # The type only: the message may hold the URL (WeChat's carries the token).
        raise MediaRefused(f"could not be fetched ({type(exc).__name__})") from None
    raise MediaRefused("too many redirects")


def _json(file: _File) -> dict[str, Any] | None:
    """A JSON object answered where a file was expected (WeChat errors, video URLs)."""
    if file.content_type not in ("application/json", "text/plain", "text/json"):
        return None
    try:
        body = json.loads(file.data)
    except (ValueError, UnicodeDecodeError):
        return None
    return body if isinstance(body, dict) else None


def _host_allowed(url: str, allowed: tuple[str, ...], extra_origin: str) -> bool:
    """https on one of ``allowed`` (or a subdomain), or the configured API origin itself
    (a local stand-in for the provider)."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    extra = urlsplit(extra_origin)
    if (parts.scheme, parts.netloc) == (extra.scheme, extra.netloc):
        return True
    if parts.scheme != "https" or not host:
        return False
    return any(host == h or host.endswith("." + h) for h in allowed)


def _meta_hosts(settings: Settings) -> Callable[[str], bool]:
    return lambda url: _host_allowed(url, META_MEDIA_HOSTS, settings.meta_graph_base)


def _https_or(origin: str) -> Callable[[str], bool]:
    """Where a provider that picks its own CDN may redirect: https anywhere, or the
    configured API origin (a local stand-in). Never plain http into our network."""
    return lambda url: urlsplit(url).scheme == "https" or _origin(url) == _origin(origin)


# -- per provider -----------------------------------------------------------------------


@dataclass(frozen=True)
class _Source:
    """Where one message's files come from: the channel's provider account and
    credentials, reached with ``http``; ``max_bytes`` caps each file."""

    http: httpx.AsyncClient
    settings: Settings
    account_id: str
    credentials: Mapping[str, str]
    max_bytes: int


async def _twilio(src: _Source, ref: MediaRef) -> _File:
    token = src.credentials.get("auth_token")
    if not token:
        raise MediaRefused("the channel has no auth_token to fetch it with")
    api = src.settings.twilio_api_base_url.rstrip("/")
    prefix = f"{api}/2010-04-01/Accounts/{src.account_id}/"
    if not ref.url or not ref.url.startswith(prefix):
        raise MediaRefused("the media URL is not at the account's Twilio API")
    auth = (src.account_id, token)
    return await _download(
        src.http, ref.url, max_bytes=src.max_bytes, allowed=_https_or(api), auth=auth
    )


async def _whatsapp(src: _Source, ref: MediaRef) -> _File:
    http, settings, max_bytes = src.http, src.settings, src.max_bytes
    token = src.credentials.get("access_token")
    if not token or not ref.media_id:
        raise MediaRefused("no media id or access token to fetch it with")
    base = api_base(settings, "meta")
    bearer = {"Authorization": f"Bearer {token}"}
    meta_hosts = _meta_hosts(settings)
    meta = _json(
        await _download(
            http,
            f"{base}/{ref.media_id}",
            max_bytes=64 * 1024,
            allowed=_https_or(base),
            headers=bearer,
        )
    )
    if meta is None or not isinstance(meta.get("url"), str):
        raise MediaRefused("the Graph API named no URL for the media")
    size = meta.get("file_size")
    if isinstance(size, int) and size > max_bytes:
        raise MediaRefused(f"larger than {max_bytes} bytes")
    url = meta["url"]
    if not meta_hosts(url):
        raise MediaRefused("the media URL is not on Meta's hosts")
    file = await _download(http, url, max_bytes=max_bytes, allowed=meta_hosts, headers=bearer)
    digest = meta.get("sha256")
    if isinstance(digest, str) and digest and hashlib.sha256(file.data).hexdigest() != digest:
        raise MediaRefused("the file does not match its sha256")
    mime = meta.get("mime_type")
    declared = _media_type(mime if isinstance(mime, str) else None)
    return _File(file.data, declared or file.content_type, file.filename)


async def _messenger(src: _Source, ref: MediaRef) -> _File:
    meta_hosts = _meta_hosts(src.settings)
    if not ref.url or not meta_hosts(ref.url):
        raise MediaRefused("the attachment URL is not on Meta's hosts")
    return await _download(src.http, ref.url, max_bytes=src.max_bytes, allowed=meta_hosts)


async def _wechat(src: _Source, ref: MediaRef) -> _File:
    http, account_id, max_bytes = src.http, src.account_id, src.max_bytes
    secret = src.credentials.get("app_secret")
    if not secret or not ref.media_id:
        raise MediaRefused("no MediaId or app secret to fetch it with")
    adapter = WeChatAdapter()
    base = src.settings.wechat_api_base.rstrip("/")
    for attempt in (1, 2):
        try:
            token = await adapter.access_token(
                http, base_url=base, account_id=account_id, secret=secret
            )
        except ProviderError as exc:  # its detail never holds the secret
            raise MediaRefused(f"no access token ({exc.detail})") from None
        file = await _download(
            http,
            f"{base}/cgi-bin/media/get",
            max_bytes=max_bytes,
            allowed=_https_or(base),
            params={"access_token": token, "media_id": ref.media_id},
        )
        answer = _json(file)
        if answer is None:
            return file
        video = answer.get("video_url")
        if isinstance(video, str) and video:
            if not video.startswith(("https://", base + "/")):
                raise MediaRefused("the video URL is not https")
            return await _download(http, video, max_bytes=max_bytes, allowed=_https_or(base))
        code = answer.get("errcode")
        if adapter.token_rejected(code) and attempt == 1:
            adapter.forget_token(base_url=base, account_id=account_id, secret=secret, token=token)
            continue
        raise MediaRefused(f"WeChat answered errcode {code}")
    raise AssertionError("unreachable")  # pragma: no cover


# -- the entry point --------------------------------------------------------------------


def _filename(ref: MediaRef, file: _File, content_type: str, index: int) -> str:
    name = ref.filename or file.filename
    if name:
        name = name.replace("\\", "/").rsplit("/", 1)[-1]
        name = _UNSAFE_NAME.sub("_", name).strip("._")[:120]
    if not name:
        extension = mimetypes.guess_extension(content_type) or ""
        name = f"{content_type.split('/')[0]}-{index + 1}{extension}"
    return name


async def fetch_media(
    http: httpx.AsyncClient,
    settings: Settings,
    *,
    channel_type: str,
    provider: str,
    account_id: str,
    credentials: Mapping[str, str],
    media: list[MediaRef],
) -> FetchedMedia:
    """The files of one inbound message: those kept as attachments, and a note for each
    one that was not."""
    out = FetchedMedia()
    allowed = {t.lower() for t in settings.attachment_content_types}
    src = _Source(http, settings, account_id, credentials, settings.attachment_max_bytes)
    for index, ref in enumerate(media):
        try:
            if provider == "twilio":
                file = await _twilio(src, ref)
            elif provider == "meta" and channel_type == "whatsapp":
                file = await _whatsapp(src, ref)
            elif provider == "meta":
                file = await _messenger(src, ref)
            elif provider == "wechat":
                file = await _wechat(src, ref)
            else:
                raise MediaRefused(f"{provider} media cannot be fetched")
            # What the provider serves the file as; what the webhook claimed otherwise.
            content_type = (
                file.content_type
                if file.content_type and file.content_type != "application/octet-stream"
                else _media_type(ref.content_type) or "application/octet-stream"
            )
            if content_type not in allowed:
                raise MediaRefused(f"{content_type} files are not accepted")
            if not file.data:
                raise MediaRefused("the file is empty")
            out.attachments.append(
                AttachmentIn(_filename(ref, file, content_type, index), content_type, file.data)
            )
        except MediaRefused as refused:
            log.info("inbound media not kept: %s", refused.reason)
            out.notes.append(refused.reason)
    return out
