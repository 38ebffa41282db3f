"""The email channel's outbound sender: an agent's reply becomes a mail threaded under
the conversation (Message-ID assigned when the reply was queued, In-Reply-To and
References from the thread), From the channel's reply address, Reply-To its inbound
address so the customer's answer comes back to the same conversation."""

from __future__ import annotations

from app.conversations.delivery import (
    OutboundContext,
    SendFailed,
    SendResult,
    register_sender,
)
from app.emailing.compose import compose_reply
from app.emailing.senders import ChannelMailer, ChannelSendFailed, channel_mailer_for

_MAILERS: dict[str, ChannelMailer] = {}


def mailer(ctx: OutboundContext) -> ChannelMailer:
    """One mailer per backend per process (the dev one keeps what it 'sent')."""
    backend = ctx.settings.mail_backend
    if backend not in _MAILERS:
        _MAILERS[backend] = channel_mailer_for(ctx.settings)
    return _MAILERS[backend]


class EmailSender:
    async def send(self, ctx: OutboundContext) -> SendResult:
        config = ctx.channel.config
        inbound = str(config.get("address") or "")
        from_address = str(config.get("reply_from") or inbound)
        files = [
            (str(a["filename"]), str(a["content_type"]), await ctx.store.get(str(a["object_key"])))
            for a in ctx.attachments
            if a.get("object_key")
        ]
        try:
            message_id, message = compose_reply(
                from_address=from_address,
                display_name=config.get("display_name"),
                to=ctx.to_address,
                subject=ctx.subject,
                text=ctx.text,
                message_id_domain=ctx.settings.inbound_email_domain,
                in_reply_to=ctx.email_in_reply_to,
                references=ctx.email_references,
                attachments=files,
                reply_to=inbound or None,
                message_id=ctx.email_message_id,
            )
        except ValueError as exc:  # ComposeError, or a value the email package refuses:
            # the same message would fail the same way on every retry
            raise SendFailed(str(exc), retryable=False) from None
        try:
            provider_id = await mailer(ctx).send_raw(from_address, [ctx.to_address], message)
        except ChannelSendFailed as exc:
            raise SendFailed(exc.detail, retryable=not exc.permanent) from None
        return SendResult(provider_message_id=provider_id or message_id)


register_sender("email", EmailSender())
