"""Channels: how customers reach a tenant (docs/decisions/0009-channels.md).

Rules: names unique per tenant; a plan quota on the count; a phone number serves at most
one channel of each type; inbound addresses (widget keys, email addresses, provider
accounts) are unique across the platform and registered in ``channel_addresses`` so
that ingress can find the tenant. Credentials and webhook secrets are encrypted with
``app.core.crypto`` under a context naming the tenant and channel, and never returned:
the webhook secret is handed out once, by the call that makes it.

Use cases live here; their parts live by concern: ``secrets`` (widget key, sealed
credentials and webhook secret), ``numbers`` (a voice or SMS channel's phone numbers) and
``targets`` (where inbound conversations go: a queue or a published flow, or neither).

Refusals come in a fixed order - bad input (422), then the quota (403), then conflicts
(409) - and are raised before anything is written, so the request's rollback has
nothing to undo; the unique indexes stand behind the checks for races.
"""

from __future__ import annotations

import re
import uuid
from dataclasses import dataclass, field
from typing import Any, TypeVar

from pydantic import SecretStr
from sqlalchemy.ext.asyncio import AsyncSession

from app.channels import numbers as channel_numbers
from app.channels import repository, targets
from app.channels.config_schemas import TEMPLATES_ONLY_TWILIO, WhatsappTemplate
from app.channels.models import Channel
from app.channels.schemas import (
    ChannelCreate,
    ChannelUpdate,
    EmailChannelCreate,
    MessagingCreate,
    SmsChannelCreate,
    VoiceChannelCreate,
    WebchatChannelCreate,
    WhatsappChannelCreate,
)
from app.channels.secrets import new_widget_key, seal_credentials, seal_webhook_secret
from app.channels.secrets import read_credentials as read_credentials  # for ingress, adapters
from app.channels.secrets import read_webhook_secret as read_webhook_secret
from app.channels.validation import MESSAGING_TYPES, PROVIDERS
from app.core.concurrency import IfMatch
from app.core.crypto import Cipher
from app.core.errors import Conflict, InvalidInput, NotFound, SwitchboardError
from app.db.base import utcnow
from app.db.integrity import guarded
from app.db.tenant import TenantScope
from app.quotas import service as quotas

quotas.register_counter("channels", repository.count)

T = TypeVar("T")

WIDGET_KEY = "widget_key"
EMAIL = "email"
PROVIDER_ID = "provider_id"

# The config fields a PATCH may set, per channel type.
PATCHABLE: dict[str, frozenset[str]] = {
    "voice": frozenset({"phone_number_ids"}),
    "webchat": frozenset({"allowed_origins", "greeting", "theme"}) | targets.KEYS,
    "email": frozenset({"reply_from", "display_name"}) | targets.KEYS,
    "sms": frozenset({"phone_number_ids"}) | targets.KEYS,
    "whatsapp": frozenset({"templates"}) | targets.KEYS,
    "wechat": targets.KEYS,
    "messenger": targets.KEYS,
}
_NOT_NULL = frozenset({"phone_number_ids", "allowed_origins"})
_FIELD_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


# -- errors -------------------------------------------------------------------------------


def _not_found() -> NotFound:
    return NotFound("No such channel.", code="channel-not-found")


def _name_taken(name: str) -> Conflict:
    return Conflict(
        f"A channel named '{name}' exists.", code="channel-name-taken", field="body.name"
    )


def _address_taken(what: str, field_path: str) -> Conflict:
    # Never says who holds it: the holder may be another tenant.
    return Conflict(f"{what} is already in use.", code="address-taken", field=field_path)


def _type_mismatch(expected: str) -> Conflict:
    return Conflict(
        f"Only {expected} channels have this.",
        code="channel-type-mismatch",
        field="path.channel_id",
    )


# -- checks -------------------------------------------------------------------------------


def _templates(templates: list[WhatsappTemplate] | None) -> list[dict[str, Any]] | None:
    """A Twilio WhatsApp channel's declared templates as stored (None: none)."""
    return [t.model_dump() for t in templates] if templates else None


def _check_credentials(
    channel_type: str, provider: str, creds: dict[str, SecretStr] | None
) -> None:
    spec = PROVIDERS[channel_type][provider]
    if creds is None:
        if spec.required:
            raise InvalidInput(
                f"{provider} needs credentials: {', '.join(spec.required)}.",
                field="body.credentials",
                code="credentials-required",
            )
        return
    for name in creds:
        if name not in spec.fields:
            takes = ", ".join(spec.fields) or "no credentials"
            raise InvalidInput(
                f"'{name}' is not a {channel_type} {provider} credential; it takes: {takes}.",
                field=f"body.credentials.{name}" if _FIELD_NAME.match(name) else "body.credentials",
            )
    for name in spec.required:
        if name not in creds:
            raise InvalidInput(
                f"is required for {channel_type} through {provider}",
                field=f"body.credentials.{name}",
            )


async def _claim_address(
    session: AsyncSession,
    scope: TenantScope,
    channel: Channel,
    kind: str,
    address: str,
    error: SwitchboardError,
) -> None:
    async def insert() -> None:
        await repository.add_address(session, scope, channel.id, kind, address)

    await guarded(session, insert, {"pk_channel_addresses": error})


async def _flush(session: AsyncSession, value: T, errors: dict[str, SwitchboardError]) -> T:
    async def flush() -> T:
        await session.flush()
        return value

    return await guarded(session, flush, errors)


def provider_address(channel_type: str, provider: str, account_id: str) -> str:
    return f"{channel_type}:{provider}:{account_id}"


# -- use cases ----------------------------------------------------------------------------


async def get(
    session: AsyncSession, scope: TenantScope, channel_id: uuid.UUID, *, for_update: bool = False
) -> Channel:
    channel = await repository.get(session, scope, channel_id, for_update=for_update)
    if channel is None:
        raise _not_found()
    return channel


@dataclass
class Created:
    channel: Channel
    phone_number_ids: list[uuid.UUID]
    webhook_secret: str | None = None


async def create(
    session: AsyncSession,
    scope: TenantScope,
    data: ChannelCreate,
    *,
    plan: str,
    cipher: Cipher,
    inbound_email_domain: str,
) -> Created:
    channel = Channel(
        tenant_id=scope.tenant_id, type=data.type, name=data.name, enabled=data.enabled
    )
    numbers: list[uuid.UUID] = []
    claims: list[tuple[str, str, SwitchboardError]] = []

    # Bad input first.
    if isinstance(data, VoiceChannelCreate | SmsChannelCreate):
        numbers = list(data.config.phone_number_ids)
        await channel_numbers.check_active(session, scope, numbers)
    if isinstance(data, WebchatChannelCreate):
        key = new_widget_key()
        channel.config = {
            "widget_key": key,
            "allowed_origins": list(data.config.allowed_origins),
            "greeting": data.config.greeting,
            "theme": data.config.theme,
        }
        claims.append((WIDGET_KEY, key, Conflict("Widget key collision; retry.")))
    elif isinstance(data, EmailChannelCreate):
        domain = inbound_email_domain.strip().lower()  # addresses are matched lower case
        address = f"{data.config.local_part}@{domain}"
        if len(address) > 254:
            raise InvalidInput(
                f"is too long: the address would pass 254 characters with @{domain}",
                field="body.config.local_part",
            )
        channel.config = {
            "local_part": data.config.local_part,
            "address": address,
            "reply_from": str(data.config.reply_from or address),
            "display_name": data.config.display_name,
        }
        taken = _address_taken(f"The address {address}", "body.config.local_part")
        claims.append((EMAIL, address, taken))
    elif isinstance(data, MessagingCreate):
        _check_credentials(data.type, data.config.provider, data.credentials)
        account = data.config.provider_account_id
        channel.config = {
            "provider": data.config.provider,
            "provider_account_id": account,
            "credential_fields": [],
        }
        if isinstance(data, WhatsappChannelCreate) and data.config.templates:
            channel.config["templates"] = _templates(data.config.templates)
        taken = _address_taken(
            f"The {data.config.provider} account {account}", "body.config.provider_account_id"
        )
        claims.append(
            (PROVIDER_ID, provider_address(data.type, data.config.provider, account), taken)
        )

    if not isinstance(data, VoiceChannelCreate):
        target = await targets.check_new(
            session, scope, data.type, data.config.queue_id, data.config.flow_id
        )
        channel.config = channel.config | target

    # Then the plan, then conflicts; nothing is written before here.
    await quotas.ensure_room(session, scope, plan, "channels")
    if await repository.get_by_name(session, scope, data.name):
        raise _name_taken(data.name)
    await channel_numbers.check_free(session, scope, numbers, data.type, None)
    for kind, address, error in claims:
        if await repository.address_taken(session, kind, address):
            raise error

    created = Created(channel, sorted(numbers))
    if isinstance(data, MessagingCreate):
        if data.credentials is not None:
            seal_credentials(cipher, channel, data.credentials)
        created.webhook_secret = seal_webhook_secret(cipher, channel)
    session.add(channel)
    await _flush(session, channel, {"ix_channels_tenant_id_name": _name_taken(data.name)})
    if numbers:
        await channel_numbers.replace(session, scope, channel, numbers)
    for kind, address, error in claims:
        await _claim_address(session, scope, channel, kind, address, error)
    return created


@dataclass
class Updated:
    channel: Channel
    phone_number_ids: list[uuid.UUID]
    changed: list[str] = field(default_factory=list)


def _null(field_path: str) -> InvalidInput:
    return InvalidInput("must not be null", field=field_path)


async def update(
    session: AsyncSession,
    scope: TenantScope,
    channel_id: uuid.UUID,
    data: ChannelUpdate,
    if_match: IfMatch,
    *,
    cipher: Cipher,
) -> Updated:
    """Change what a channel's type allows; a no-op keeps the version (and ETag)."""
    channel = await get(session, scope, channel_id, for_update=True)
    if_match.check(channel.version)
    sent = data.model_fields_set
    if data.type is not None and data.type != channel.type:
        raise InvalidInput(
            f"A channel's type cannot change (this one is {channel.type}); create a new channel.",
            field="body.type",
            code="channel-type-immutable",
        )
    for name in ("name", "enabled", "config"):
        if name in sent and getattr(data, name) is None:
            raise _null(f"body.{name}")
    config_sent: dict[str, Any] = {}
    if data.config is not None:
        config_sent = {k: getattr(data.config, k) for k in data.config.model_fields_set}
    for name, value in config_sent.items():
        if name not in PATCHABLE[channel.type]:
            raise InvalidInput(
                f"does not apply to {channel.type} channels (or cannot change: create a new "
                "channel to change an inbound address, provider or account)",
                field=f"body.config.{name}",
            )
        if value is None and name in _NOT_NULL:
            raise _null(f"body.config.{name}")
        if name == "templates" and value and channel.config.get("provider") != "twilio":
            raise InvalidInput(TEMPLATES_ONLY_TWILIO, field="body.config.templates")
    if "credentials" in sent:
        if channel.type not in MESSAGING_TYPES:
            raise InvalidInput(
                f"{channel.type} channels take no credentials", field="body.credentials"
            )
        if data.credentials is None:
            raise _null("body.credentials")
        _check_credentials(channel.type, channel.config["provider"], data.credentials)

    await targets.check_change(session, scope, channel, config_sent)

    current = (await repository.numbers_of(session, scope, [channel.id])).get(channel.id, [])
    numbers = current
    if "phone_number_ids" in config_sent:
        numbers = list(config_sent["phone_number_ids"])
        await channel_numbers.check_active(session, scope, numbers)

    renamed = data.name is not None and data.name.lower() != channel.name.lower()
    if renamed and data.name and await repository.get_by_name(session, scope, data.name):
        raise _name_taken(data.name)
    if numbers is not current:
        await channel_numbers.check_free(session, scope, numbers, channel.type, channel.id)

    changed: list[str] = []
    if data.name is not None and data.name != channel.name:
        channel.name = data.name
        changed.append("name")
    if data.enabled is not None and data.enabled != channel.enabled:
        channel.enabled = data.enabled
        changed.append("enabled")
    config = dict(channel.config)
    for name, value in config_sent.items():
        if name == "phone_number_ids":
            continue
        if name == "reply_from":
            value = str(value) if value is not None else config["address"]
        elif name == "allowed_origins":
            value = list(value)
        elif name == "templates":
            value = _templates(value)
        elif name in targets.KEYS:
            value = targets.as_json(value)
        if config.get(name) != value:
            config[name] = value
            changed.append(f"config.{name}")
    if config != channel.config:
        channel.config = config
    numbers_changed = set(numbers) != set(current)
    if numbers_changed:
        changed.append("config.phone_number_ids")
    if data.credentials is not None:
        seal_credentials(cipher, channel, data.credentials)
        changed.append("credentials")
    if not changed:
        return Updated(channel, sorted(current))
    channel.version += 1
    channel.updated_at = utcnow()
    await _flush(session, channel, {"ix_channels_tenant_id_name": _name_taken(channel.name)})
    if numbers_changed:
        await channel_numbers.replace(session, scope, channel, numbers)
    return Updated(channel, sorted(numbers), changed)


async def load_for_ingress(
    session: AsyncSession, scope: TenantScope, channel_id: uuid.UUID
) -> Channel | None:
    """The channel row for inbound traffic, enabled or not (the caller checks
    ``enabled``, the request's signature and ``config.queue_id`` / ``config.flow_id``:
    both null means the channel opens no conversations yet). None if this tenant has no
    such channel, e.g. it was deleted after its address resolved."""
    return await repository.get(session, scope, channel_id)


async def delete(
    session: AsyncSession, scope: TenantScope, channel_id: uuid.UUID, if_match: IfMatch
) -> Channel:
    """Remove a channel, its number attachments and its inbound addresses (which stop
    resolving at once)."""
    channel = await get(session, scope, channel_id, for_update=True)
    if_match.check(channel.version)
    rules = await repository.proactive_rules_on(session, scope, channel_id)
    if rules:
        # A rule without its channel would apply to every channel: refuse instead.
        raise Conflict(
            f"Proactive rules apply to this channel ({', '.join(rules)}); point them "
            "elsewhere or delete them first.",
            code="channel-in-use",
        )

    async def remove() -> Channel:
        await session.delete(channel)
        await session.flush()
        return channel

    in_use = Conflict("Something still uses this channel.", code="channel-in-use")
    return await guarded(session, remove, {}, default=in_use)


async def _bump(session: AsyncSession, channel: Channel) -> None:
    channel.version += 1
    channel.updated_at = utcnow()
    await session.flush()


async def rotate_widget_key(
    session: AsyncSession, scope: TenantScope, channel_id: uuid.UUID, if_match: IfMatch
) -> Channel:
    """A new public widget key; the old one stops resolving in the same transaction."""
    channel = await get(session, scope, channel_id, for_update=True)
    if_match.check(channel.version)
    if channel.type != "webchat":
        raise _type_mismatch("webchat")
    key = new_widget_key()
    await repository.remove_addresses(session, scope, channel.id, WIDGET_KEY)
    await _claim_address(
        session, scope, channel, WIDGET_KEY, key, Conflict("Widget key collision; retry.")
    )
    channel.config = {**channel.config, "widget_key": key}
    await _bump(session, channel)
    return channel


async def rotate_webhook_secret(
    session: AsyncSession,
    scope: TenantScope,
    channel_id: uuid.UUID,
    if_match: IfMatch,
    *,
    cipher: Cipher,
) -> tuple[Channel, str]:
    """A new webhook secret, returned once; the old one stops verifying at once."""
    channel = await get(session, scope, channel_id, for_update=True)
    if_match.check(channel.version)
    if channel.type not in MESSAGING_TYPES:
        raise _type_mismatch("sms, whatsapp, wechat and messenger")
    secret = seal_webhook_secret(cipher, channel)
    await _bump(session, channel)
    return channel, secret
