"""WeChat Official Accounts: message push (XML webhooks) and the customer-service
message API.

Webhooks (https://developers.weixin.qq.com/doc/offiaccount/Basic_Information/Access_Overview.html):
every request carries ``signature`` = hex SHA-1 of the sorted concatenation of the
account's token, ``timestamp`` and ``nonce``; the GET that proves the URL echoes
``echostr``. The timestamp is signed, so an old request is refused as stale. In the
"safe" mode (``encrypt_type=aes``, the channel holds ``encoding_aes_key``) the body is
an ``<Encrypt>`` envelope (AES-256-CBC) and ``msg_signature`` also covers it.

Bodies are XML from the internet: the parser refuses any document type (so no entity is
ever declared, fetched or expanded: no external entities, no billion laughs), and size
is capped.

Sending: an access token from ``POST /cgi-bin/stable_token`` (cached per app until
shortly before it expires), then ``POST /cgi-bin/message/custom/send?access_token=...``.
The stable token is the same for every caller within its lifetime, so API replicas each
fetching it never invalidate each other's (``GET /cgi-bin/token`` would: each call
issues a new token and kills the last). A token WeChat calls expired or invalid is
dropped and fetched again in the normal mode, since another replica may already hold
the fresh one; only when that answers the very token WeChat refused is a new one forced
(``force_refresh``: at most once in 30 s and 20 times a day per app, errcode 45009
beyond, which leaves the message to the dispatcher's retry). WeChat answers no message
id: the result carries one we make (``wechat-...``).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import logging
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from xml.parsers import expat

import httpx
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from app.messaging.providers.base import (
    InboundMessage,
    MediaRef,
    Outgoing,
    ProviderError,
    SendResult,
    WebhookCheck,
    WebhookEvent,
    WebhookRefused,
    WebhookRequest,
    generated_id,
    is_stale,
    json_answer,
    parse_unix,
    required_credential,
    retryable_status,
    transport_error,
    webhook_credential,
)

MAX_XML_BYTES = 64 * 1024
_CDATA = re.compile(r"<!\[CDATA\[.*?\]\]>", re.DOTALL)
_DECLARATIONS = "XML declarations (DOCTYPE, ENTITY) are refused"
_MAX_ECHO = 128
# errcodes meaning "this access token is no good" (expired, invalid, replaced).
_TOKEN_ERRORS = frozenset({40001, 40014, 42001})
# errcodes meaning "later": system busy, API call quota.
_RETRYABLE = frozenset({-1, 45009, 45011})
# A forced stable_token refresh refused: within 30 s of the last, or 20 in a day.
_FORCE_REFUSED = 45009
# Refresh a token this long before WeChat says it expires.
_TOKEN_MARGIN = 300
_VOICE_TYPES = {"amr": "audio/amr", "speex": "audio/speex", "mp3": "audio/mpeg"}


def signature(*parts: str) -> str:
    """WeChat's signature: hex SHA-1 of the parts sorted and joined."""
    return hashlib.sha1("".join(sorted(parts)).encode(), usedforsecurity=False).hexdigest()


# -- XML ----------------------------------------------------------------------------------


def _screen(body: bytes, max_bytes: int) -> str:
    """The body as text, if it is small, UTF-8 and visibly declares no DTD or entity (a
    first pass with a clear reason; the parser's own refusal is what guarantees it)."""
    if len(body) > max_bytes:
        raise WebhookRefused("malformed", f"the XML body is larger than {max_bytes} bytes")
    try:
        text = body.decode("utf-8").lstrip("\ufeff")
    except UnicodeDecodeError:
        raise WebhookRefused("malformed", "the XML body is not UTF-8") from None
    # CDATA is literal text (a customer may well type "<!DOCTYPE"); outside it, any
    # markup declaration other than a comment is refused.
    outside = _CDATA.sub("", text)
    for at in (m.start() for m in re.finditer("<!", outside)):
        if not outside.startswith("<!--", at):
            raise WebhookRefused("malformed", _DECLARATIONS)
    return text


class _Declared(Exception):
    """The document declares a type (and with it, possibly, entities)."""


def _refuse_declaration(*_: object) -> None:
    raise _Declared


def _refuse_external(*_: object) -> int:
    raise _Declared


def parse_xml(body: bytes, *, max_bytes: int = MAX_XML_BYTES) -> dict[str, str]:
    """A WeChat message (``<xml><Tag>text</Tag>...</xml>``) as {tag: text}: the root's
    direct children, first of each name. WebhookRefused("malformed") otherwise.

    Parsed by expat directly, refusing a document type in the parser itself (a textual
    screen can be fooled: a ``<![CDATA[`` inside one comment and ``]]>`` inside a later
    one hide whatever lies between); without one, no entity can be declared, and a
    reference to an undeclared one is an error."""
    text = _screen(body, max_bytes)
    parser = expat.ParserCreate()
    parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)
    parser.StartDoctypeDeclHandler = _refuse_declaration
    parser.EntityDeclHandler = _refuse_declaration
    parser.ExternalEntityRefHandler = _refuse_external
    out: dict[str, str] = {}
    path: list[str] = []
    leaf: list[str] = []  # the text of the current child of the root
    nested = False  # the current child of the root has elements in it
    root: list[str] = []

    def start(tag: str, _attributes: object) -> None:
        nonlocal nested
        if not path:
            root.append(tag)
        elif len(path) == 1:
            leaf.clear()
            nested = False
        else:
            nested = True
        path.append(tag)

    def end(tag: str) -> None:
        path.pop()
        if len(path) == 1:
            out.setdefault(tag, "" if nested else "".join(leaf).strip())

    def data(chunk: str) -> None:
        if len(path) == 2:
            leaf.append(chunk)

    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = data
    try:
        # A str: expat then reads UTF-8 whatever encoding a declaration claims, so a
        # UTF-16 label cannot change what is parsed.
        parser.Parse(text, True)
    except _Declared:
        raise WebhookRefused("malformed", _DECLARATIONS) from None
    except expat.ExpatError:
        raise WebhookRefused("malformed", "the body is not well-formed XML") from None
    if root != ["xml"]:
        raise WebhookRefused("malformed", "the root element is not <xml>")
    return out


# -- safe mode ----------------------------------------------------------------------------


def _aes_key(encoding_aes_key: str) -> bytes:
    try:
        key = base64.b64decode(encoding_aes_key + "=", validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if len(key) != 32:
        raise WebhookRefused(
            "malformed", "the channel's encoding_aes_key is not a 43-character key"
        )
    return key


def decrypt(encoding_aes_key: str, encrypted: str) -> tuple[bytes, str]:
    """The message and the AppID inside an ``<Encrypt>`` value: AES-256-CBC (IV = the
    key's first 16 bytes, PKCS#7 to 32 bytes) over 16 random bytes, the message's
    length (4 bytes, big-endian), the message and the AppID."""
    key = _aes_key(encoding_aes_key)
    try:
        data = base64.b64decode(encrypted, validate=True)
    except (binascii.Error, ValueError):
        raise WebhookRefused("malformed", "Encrypt is not base64") from None
    if not data or len(data) % 16:
        raise WebhookRefused("malformed", "Encrypt is not whole AES blocks")
    decryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).decryptor()
    plain = decryptor.update(data) + decryptor.finalize()
    pad = plain[-1]
    if not 1 <= pad <= 32 or plain[-pad:] != bytes([pad]) * pad:
        raise WebhookRefused("malformed", "Encrypt does not decrypt with the channel's key")
    content = plain[16:-pad]
    if len(content) < 4:
        raise WebhookRefused("malformed", "Encrypt holds no message")
    size = int.from_bytes(content[:4], "big")
    if size > len(content) - 4:
        raise WebhookRefused("malformed", "Encrypt's message length is wrong")
    message, appid = content[4 : 4 + size], content[4 + size :]
    try:
        return message, appid.decode("utf-8")
    except UnicodeDecodeError:
        raise WebhookRefused("malformed", "Encrypt's AppID is not text") from None


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


_TOKENS = TokenCache()


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


# -- the adapter --------------------------------------------------------------------------


class WeChatAdapter:
    channel_type = "wechat"
    provider = "wechat"

    def __init__(self, tokens: TokenCache | None = None) -> None:
        self.tokens = tokens or _TOKENS

    # -- webhooks --------------------------------------------------------------------------

    def accounts(self, request: WebhookRequest) -> list[str]:
        try:
            to = parse_xml(request.body).get("ToUserName")
        except WebhookRefused:
            return []
        return [to] if to else []

    def _check(self, request: WebhookRequest, token: str, check: WebhookCheck) -> dict[str, str]:
        query = request.query
        given, timestamp, nonce = (query.get(k) for k in ("signature", "timestamp", "nonce"))
        if not given or not timestamp or nonce is None:
            raise WebhookRefused("signature-invalid", "no signature, timestamp or nonce")
        if not hmac.compare_digest(signature(token, timestamp, nonce).encode(), given.encode()):
            raise WebhookRefused("signature-invalid", "signature does not match")
        if is_stale(parse_unix(timestamp, "timestamp"), check.now, check.max_age):
            raise WebhookRefused("stale", "timestamp is outside the allowed window")
        return query

    def handshake(self, request: WebhookRequest, check: WebhookCheck) -> str:
        query = self._check(request, webhook_credential(check.credentials, "token"), check)
        echo = query.get("echostr", "")
        if not echo or len(echo) > _MAX_ECHO or not echo.isalnum():
            raise WebhookRefused("malformed", "echostr is missing or not alphanumeric")
        return echo

    def verify(self, request: WebhookRequest, check: WebhookCheck) -> None:
        token = webhook_credential(check.credentials, "token")
        query = self._check(request, token, check)
        if query.get("encrypt_type", "raw") == "raw":
            # A plaintext push's signature covers the query, not the body: anyone holding
            # one unused signed query could post any body. A channel set up for safe
            # mode (it holds the AES key) therefore takes encrypted pushes only; WeChat's
            # compatible mode sends encrypt_type=aes too.
            if check.credentials.get("encoding_aes_key"):
                raise WebhookRefused(
                    "signature-invalid",
                    "the channel takes encrypted pushes only (safe mode): a plaintext push "
                    "is refused",
                )
            return
        envelope = parse_xml(request.body).get("Encrypt")
        given = query.get("msg_signature")
        if not envelope or not given:
            raise WebhookRefused("signature-invalid", "an encrypted push without msg_signature")
        expected = signature(token, query["timestamp"], query["nonce"], envelope)
        if not hmac.compare_digest(expected.encode(), given.encode()):
            raise WebhookRefused("signature-invalid", "msg_signature does not match")

    def parse(
        self,
        request: WebhookRequest,
        *,
        account_id: str,
        credentials: Mapping[str, str],
        received_at: datetime,
    ) -> list[WebhookEvent]:
        fields = parse_xml(request.body)
        if request.query.get("encrypt_type", "raw") != "raw":
            aes_key = credentials.get("encoding_aes_key")
            if not aes_key or not fields.get("Encrypt"):
                raise WebhookRefused(
                    "malformed", "an encrypted push, but the channel has no encoding_aes_key"
                )
            message, appid = decrypt(aes_key, fields["Encrypt"])
            if appid != account_id:
                raise WebhookRefused("malformed", "the encrypted push is for another AppID")
            fields = parse_xml(message)
        return self._events(fields)

    def _events(self, fields: dict[str, str]) -> list[WebhookEvent]:
        kind = fields.get("MsgType")
        sender, account = fields.get("FromUserName"), fields.get("ToUserName")
        if not kind or not sender or not account:
            raise WebhookRefused("malformed", "no MsgType, FromUserName or ToUserName")
        if kind == "event":
            return []  # follows, menu clicks, template receipts: not messages
        msg_id = fields.get("MsgId")
        if not msg_id:
            raise WebhookRefused("malformed", "a message without MsgId")
        sent_at = parse_unix(fields.get("CreateTime"), "CreateTime")
        text, media = "", []
        if kind == "text":
            text = fields.get("Content", "")
        elif kind == "image":
            media.append(MediaRef(url=fields.get("PicUrl") or None, media_id=fields.get("MediaId")))
        elif kind == "voice":
            fmt = fields.get("Format", "").lower()
            media.append(
                MediaRef(media_id=fields.get("MediaId"), content_type=_VOICE_TYPES.get(fmt))
            )
            text = fields.get("Recognition", "")  # speech-to-text, when the account has it
        elif kind in ("video", "shortvideo"):
            media.append(MediaRef(media_id=fields.get("MediaId"), content_type="video/mp4"))
        elif kind == "location":
            label = fields.get("Label", "")
            text = f"Location: {fields.get('Location_X')}, {fields.get('Location_Y')}" + (
                f" ({label})" if label else ""
            )
        elif kind == "link":
            text = "\n".join(
                t for t in (fields.get("Title"), fields.get("Description"), fields.get("Url")) if t
            )
        else:
            text = f"[WeChat {kind} message]"
        if any(m.url is None and not m.media_id for m in media):
            raise WebhookRefused("malformed", f"a WeChat {kind} without MediaId")
        return [
            InboundMessage(
                provider_message_id=msg_id,
                sender_id=sender,
                account_id=account,
                text=text,
                media=media,
                sent_at=sent_at,
            )
        ]

    # -- sending ---------------------------------------------------------------------------

    async def _token(
        self, client: httpx.AsyncClient, base: str, appid: str, secret: str
    ) -> tuple[tuple[str, str, str], str]:
        key = self.tokens.key(base, appid, secret)
        cached = self.tokens.get(key)
        if cached is not None:
            return key, cached
        token, life = await self._stable_token(client, base, appid, secret, force=False)
        if self.tokens.refused(key, token):
            # WeChat still hands out the token it refuses: only a forced refresh helps.
            token, life = await self._forced_token(client, key, base, appid, secret)
        self.tokens.put(key, token, life)
        return key, token

    async def _forced_token(
        self,
        client: httpx.AsyncClient,
        key: tuple[str, str, str],
        base: str,
        appid: str,
        secret: str,
    ) -> tuple[str, float]:
        try:
            return await self._stable_token(client, base, appid, secret, force=True)
        except _Refused as exc:
            if exc.errcode != _FORCE_REFUSED:
                raise
            # Forced refreshes are 30 s apart at least: another replica may have just
            # forced one, and its token is then what the normal mode answers.
            token, life = await self._stable_token(client, base, appid, secret, force=False)
            if self.tokens.refused(key, token):
                # The dispatcher's first retry comes 30 s later: past WeChat's interval.
                raise ProviderError(
                    self.provider,
                    "access token: WeChat refuses the token it hands out, and refused to "
                    f"force a new one: {exc.reason}",
                    retryable=True,
                ) from None
            return token, life

    async def _stable_token(
        self, client: httpx.AsyncClient, base: str, appid: str, secret: str, *, force: bool
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
            raise transport_error(self.provider, exc) from exc
        body = self._answer(r, f"{what}: ")
        token = body.get("access_token")
        if not isinstance(token, str) or not token or body.get("errcode", 0) != 0:
            raise self._refused(body, what, secret)
        expires_in = body.get("expires_in")
        life = float(expires_in) if isinstance(expires_in, int | float) and expires_in > 0 else 7200
        return token, life

    async def access_token(
        self, client: httpx.AsyncClient, *, base_url: str, account_id: str, secret: str
    ) -> str:
        """The app's access token (cached), for other calls of WeChat's API (media).
        After ``forget_token``, a fetch that answers the refused token forces a new one."""
        return (await self._token(client, base_url.rstrip("/"), account_id, secret))[1]

    def forget_token(self, *, base_url: str, account_id: str, secret: str, token: str) -> None:
        """WeChat called ``token`` expired or invalid: drop it from the cache."""
        self.tokens.refuse(self.tokens.key(base_url.rstrip("/"), account_id, secret), token)

    @staticmethod
    def token_rejected(errcode: object) -> bool:
        return errcode in _TOKEN_ERRORS

    async def send(self, client: httpx.AsyncClient, message: Outgoing) -> SendResult:
        """A text message. Files go as links in the text: WeChat takes images only as
        media uploaded to it first, which this adapter does not do."""
        secret = required_credential(self.provider, message.credentials, "app_secret")
        message.require_recipient(self.provider)
        content = "\n".join(t for t in (message.text, *message.media_urls) if t)
        if not content:
            raise ProviderError(self.provider, "nothing to send", retryable=False)
        base = message.base_url.rstrip("/")
        payload = {"touser": message.to, "msgtype": "text", "text": {"content": content}}
        # Raw UTF-8: WeChat shows \u escapes of some clients literally.
        data = json.dumps(payload, ensure_ascii=False).encode("utf-8")
        for attempt in (1, 2):
            key, token = await self._token(client, base, message.account_id, secret)
            try:
                r = await client.post(
                    f"{base}/cgi-bin/message/custom/send",
                    params={"access_token": token},
                    content=data,
                    headers={"Content-Type": "application/json; charset=utf-8"},
                )
            except httpx.HTTPError as exc:
                raise transport_error(self.provider, exc) from exc
            body = self._answer(r)
            code = body.get("errcode", 0)
            if code == 0:
                return SendResult(provider_message_id=generated_id("wechat"), status="sent")
            if code in _TOKEN_ERRORS:
                self.tokens.refuse(key, token)
                if attempt == 1:
                    continue
            raise self._refused(body, "send", secret, token)
        raise AssertionError("unreachable")  # pragma: no cover

    def _answer(self, r: httpx.Response, what: str = "") -> dict[str, Any]:
        """The JSON object of an HTTP 200 answer; ProviderError for any other status."""
        if r.status_code != 200:
            raise ProviderError(
                self.provider,
                f"{what}HTTP {r.status_code}",
                retryable=retryable_status(r.status_code),
            )
        return json_answer(self.provider, r)

    def _refused(self, body: dict[str, Any], what: str, *secrets: str) -> _Refused:
        """WeChat's errcode answer as a ProviderError; an errmsg may echo the request, so
        the secrets the call used are scrubbed from it."""
        code = body.get("errcode")
        message = body.get("errmsg")
        reason = f"errcode {code}" + (f": {message}" if isinstance(message, str) else "")
        return _Refused(code, _scrub(reason, *secrets), what)


class _Refused(ProviderError):
    """An errcode answer; ``errcode`` and ``reason`` for the adapter's own decisions."""

    def __init__(self, errcode: object, reason: str, what: str) -> None:
        super().__init__(
            WeChatAdapter.provider, f"{what}: {reason}", retryable=errcode in _RETRYABLE
        )
        self.errcode = errcode
        self.reason = reason
