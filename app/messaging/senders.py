"""Outbound senders for SMS, WhatsApp, WeChat and Messenger: the conversation core's
dispatcher (``app.conversations.delivery``) hands each queued message to the sender of
its channel's type, which sends it through the channel's provider adapter.

- The recipient is the customer's identity on the channel (E.164, wa_id, openid, PSID).
- The sender, where the provider needs one (Twilio), is our address the customer last
  wrote to on the channel, else the channel's first phone number (SMS).
- Attachments go as presigned download URLs of the stored files: the provider fetches
  them (WeChat gets them as links in the text).
- A WhatsApp template goes instead of the text, through Meta (by name) or Twilio (by the
  Content SID the channel declares for it). The reply refuses a template elsewhere, or
  one a Twilio channel does not declare; a message that still reaches such a sender
  (the declaration was removed meanwhile) fails, never goes out as its readable
  rendering. A Messenger agent reply after 24 hours carries its message tag
  (HUMAN_AGENT).
- Twilio reports delivery to the channel's webhook URL (``StatusCallback``).
- The sandbox SMS provider sends nothing anywhere: it answers a generated id, status
  ``sent``; its delivery receipts come only from whoever posts them to its webhook.

A ``ProviderError`` becomes ``SendFailed`` with the provider's reason; ``retryable``
when the provider was down, throttling or unreachable, so the dispatcher tries again.
"""

from __future__ import annotations

import logging
from typing import Any

from app.conversations.delivery import (
    OutboundContext,
    SendFailed,
    SendResult,
    register_sender,
)
from app.conversations.windows import declared_template, undeclared_template
from app.messaging.providers import (
    Outgoing,
    ProviderError,
    UnsupportedProvider,
    adapter_for,
    api_base,
)
from app.messaging.providers.base import OutgoingTemplate

log = logging.getLogger("switchboard.messaging.senders")

CHANNEL_TYPES = ("sms", "whatsapp", "wechat", "messenger")
# Long enough for Twilio or Meta to fetch a file after the send call returns.
MEDIA_URL_SECONDS = 3600


def status_callback(ctx: OutboundContext, provider: str, account_id: str) -> str | None:
    if provider != "twilio":
        return None
    from app.messaging.webhooks import webhook_path

    base = ctx.settings.public_url.rstrip("/")
    return base + webhook_path(ctx.channel.type, provider, account_id)


async def media_urls(ctx: OutboundContext) -> list[str]:
    """Presigned download URLs of the message's attachments (``object_key`` is added
    to each by the dispatcher)."""
    urls = []
    for item in ctx.attachments:
        key = item.get("object_key")
        if not key:
            raise SendFailed(
                f"attachment {item.get('attachment_id')} is not in storage", retryable=False
            )
        urls.append(
            await ctx.store.presign_download(
                str(key),
                expires_seconds=max(MEDIA_URL_SECONDS, ctx.settings.storage_presign_seconds),
                filename=str(item.get("filename") or "attachment"),
            )
        )
    return urls


def outgoing_template(
    stored: dict[str, Any], provider: str = "meta", config: Any = None
) -> OutgoingTemplate:
    """The template as stored on the message ({name, language, parameters}); through
    Twilio, with the Content SID the channel declares for it now."""
    name, language = stored.get("name"), stored.get("language")
    parameters = stored.get("parameters") or []
    if not isinstance(name, str) or not isinstance(language, str):
        raise SendFailed("the stored template has no name or language", retryable=False)
    if not isinstance(parameters, list) or not all(isinstance(p, str) for p in parameters):
        raise SendFailed("the stored template's parameters are not text", retryable=False)
    content_sid = None
    if provider == "twilio":
        problem = undeclared_template(config, name, language, len(parameters))
        declared = declared_template(config, name, language)
        if problem is not None or declared is None:
            reason = problem[1] if problem else "the template is not declared"
            raise SendFailed(reason, retryable=False)
        content_sid = str(declared.get("content_sid") or "")
    return OutgoingTemplate(
        name=name, language=language, parameters=tuple(parameters), content_sid=content_sid
    )


class ProviderSender:
    """One channel type's messages, through whichever provider the channel uses."""

    def __init__(self, channel_type: str) -> None:
        self.channel_type = channel_type

    async def send(self, ctx: OutboundContext) -> SendResult:
        config = ctx.channel.config
        provider = str(config.get("provider") or "")
        account_id = str(config.get("provider_account_id") or "")
        try:
            adapter = adapter_for(ctx.channel.type, provider)
        except UnsupportedProvider as exc:
            raise SendFailed(str(exc), retryable=False) from None
        sender = ctx.reply_from
        if not sender and ctx.channel_numbers:
            sender = ctx.channel_numbers[0]
        template = None
        if ctx.template is not None:
            if ctx.channel.type != "whatsapp" or provider not in ("meta", "twilio"):
                raise SendFailed(
                    f"templates are sent on WhatsApp through Meta or Twilio, not {provider}",
                    retryable=False,
                )
            template = outgoing_template(ctx.template, provider, config)
        try:
            message = Outgoing(
                base_url=api_base(ctx.settings, provider),
                account_id=account_id,
                credentials=ctx.credentials,
                to=ctx.to_address,
                text=ctx.text,
                media_urls=await media_urls(ctx),
                status_callback=status_callback(ctx, provider, account_id),
                sender=sender,
                template=template,
                messaging_tag=ctx.messaging_tag,
            )
            result = await adapter.send(ctx.http, message)
        except ProviderError as exc:
            log.info(
                "provider refused an outbound message",
                extra={
                    "tenant.id": str(ctx.tenant_id),
                    "channel_id": str(ctx.channel.id),
                    "provider": provider,
                    "retryable": exc.retryable,
                },
            )
            raise SendFailed(exc.detail, retryable=exc.retryable) from None
        return SendResult(provider_message_id=result.provider_message_id, status=result.status)


for _type in CHANNEL_TYPES:
    register_sender(_type, ProviderSender(_type))
