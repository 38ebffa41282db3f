"""A channel's secrets: the public widget key it is minted with, and the provider
credentials and webhook secret it keeps encrypted with ``app.core.crypto`` under a
context naming the tenant and channel. The clear values are for the channel's adapter
and ingress only, never for the API: the webhook secret is handed out once, by the call
that makes it.
"""

from __future__ import annotations

import json
import secrets

from pydantic import SecretStr

from app.channels.models import Channel
from app.core.crypto import Cipher


def new_widget_key() -> str:
    return "wk_" + secrets.token_urlsafe(18)  # 24 url-safe characters


def new_webhook_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def _context(what: str, channel: Channel) -> str:
    return f"channels.{what}:{channel.tenant_id}:{channel.id}"


def seal_credentials(cipher: Cipher, channel: Channel, creds: dict[str, SecretStr]) -> None:
    """Encrypt ``creds`` onto the channel; its config lists the field names only."""
    plain = json.dumps({k: v.get_secret_value() for k, v in creds.items()}, sort_keys=True)
    channel.credentials_enc = cipher.encrypt(plain, context=_context("credentials", channel))
    channel.config = {**channel.config, "credential_fields": sorted(creds)}


def seal_webhook_secret(cipher: Cipher, channel: Channel) -> str:
    """A new webhook secret, encrypted onto the channel; returned in clear once."""
    secret = new_webhook_secret()
    channel.webhook_secret_enc = cipher.encrypt(secret, context=_context("webhook_secret", channel))
    return secret


def read_credentials(cipher: Cipher, channel: Channel) -> dict[str, str]:
    """The provider credentials in clear, for the channel's adapter (never for the API)."""
    if not channel.credentials_enc:
        return {}
    plain = cipher.decrypt(channel.credentials_enc, context=_context("credentials", channel))
    creds: dict[str, str] = json.loads(plain)
    return creds


def read_webhook_secret(cipher: Cipher, channel: Channel) -> str | None:
    """The webhook secret in clear, for ingress to check a request's HMAC."""
    if not channel.webhook_secret_enc:
        return None
    return cipher.decrypt(channel.webhook_secret_enc, context=_context("webhook_secret", channel))
