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

The XML parser, the signature and the safe mode's decryption are in ``wechat_xml``; the
token cache and fetching, WeChat's errcode answers and the httpx log redaction in
``wechat_tokens``. This module holds the adapter.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Mapping
from datetime import datetime

import httpx

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
    parse_unix,
    required_credential,
    transport_error,
    webhook_credential,
)
from app.messaging.providers.wechat_tokens import (
    TOKEN_ERRORS,
    TOKENS,
    TokenCache,
    answer,
    fetch_token,
    refused,
)
from app.messaging.providers.wechat_xml import decrypt, parse_xml, signature

_MAX_ECHO = 128
_VOICE_TYPES = {"amr": "audio/amr", "speex": "audio/speex", "mp3": "audio/mpeg"}


class WeChatAdapter:
    channel_type = "wechat"
    provider = "wechat"

    def __init__(self, tokens: TokenCache | None = None) -> None:
        self.tokens = tokens or TOKENS

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

    async def access_token(
        self, client: httpx.AsyncClient, *, base_url: str, account_id: str, secret: str
    ) -> str:
        """The app's access token (cached), for other calls of WeChat's API (media).
        After ``forget_token``, a fetch that answers the refused token forces a new one."""
        base = base_url.rstrip("/")
        return (await fetch_token(self.tokens, client, base, account_id, secret))[1]

    def forget_token(self, *, base_url: str, account_id: str, secret: str, token: str) -> None:
        """WeChat called ``token`` expired or invalid: drop it from the cache."""
        self.tokens.refuse(self.tokens.key(base_url.rstrip("/"), account_id, secret), token)

    @staticmethod
    def token_rejected(errcode: object) -> bool:
        return errcode in TOKEN_ERRORS

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
            key, token = await fetch_token(self.tokens, client, base, message.account_id, secret)
            try:
                r = await client.post(
                    f"{base}/cgi-bin/message/custom/send",
                    params={"access_token": token},
                    content=data,
                    headers={"Content-Type": "application/json; charset=utf-8"},
                )
            except httpx.HTTPError as exc:
                raise transport_error(self.provider, exc) from exc
            body = answer(r)
            code = body.get("errcode", 0)
            if code == 0:
                return SendResult(provider_message_id=generated_id("wechat"), status="sent")
            if code in TOKEN_ERRORS:
                self.tokens.refuse(key, token)
                if attempt == 1:
                    continue
            raise refused(body, "send", secret, token)
        raise AssertionError("unreachable")  # pragma: no cover
