from __future__ import annotations

import uuid
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel

from app.audit.service import audit
from app.auth.principal import Principal, require
from app.channels import numbers as channel_numbers
from app.channels import repository, service
from app.channels.config_schemas import (
    EmailConfigRead,
    ProviderConfigRead,
    SmsConfigRead,
    VoiceConfigRead,
    WebchatConfigRead,
)
from app.channels.docs import (
    ADDRESS_TAKEN,
    BAD_CONFIG,
    CREATED_EXAMPLES,
    FLOW_NOT_PUBLISHED,
    IN_USE,
    NAME_TAKEN,
    NO_STORE_HEADER,
    NUMBER_IN_USE,
    QUEUE_NOT_TAKING,
    READ_EXAMPLE,
    READ_WITH_ETAG,
    TYPE_IMMUTABLE,
    TYPE_MISMATCH,
    UNKNOWN_NUMBER,
    UNKNOWN_QUEUE,
)
from app.channels.models import Channel
from app.channels.schemas import (
    CREATE_EXAMPLES,
    ChannelCreate,
    ChannelCreated,
    ChannelPage,
    ChannelRead,
    ChannelUpdate,
    EmailChannelRead,
    MessengerChannelCreated,
    MessengerChannelRead,
    SmsChannelCreated,
    SmsChannelRead,
    VoiceChannelRead,
    WebchatChannelRead,
    WebhookSecretIssued,
    WechatChannelCreated,
    WechatChannelRead,
    WhatsappChannelCreated,
    WhatsappChannelRead,
)
from app.channels.validation import CHANNEL_TYPES, ChannelType
from app.core.concurrency import IfMatchDep, etag, with_etag
from app.core.crypto import CipherDep
from app.core.openapi import (
    ETAG_HEADER,
    PRECONDITION_FAILED,
    WITH_ETAG,
    not_found,
    problem,
    scope_or_quota,
)
from app.core.pagination import PageParams, page_params, page_rows
from app.db.engine import SessionDep
from app.idempotency.service import IdempotencyDep


class _ChannelRoute(APIRoute):
    """Reports errors inside the create body's discriminated union at the field the
    client sent (``body.config.greeting``), not under pydantic's union tag
    (``body.webchat.config.greeting``), and a bad or missing tag at ``body.type``."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def untagged(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as exc:
                errors = [_untag(dict(e)) for e in exc.errors()]
                raise RequestValidationError(errors, body=exc.body) from None

        return untagged


def _untag(err: dict[str, Any]) -> dict[str, Any]:
    loc = tuple(err.get("loc", ()))
    if err.get("type") in ("union_tag_invalid", "union_tag_not_found") and loc == ("body",):
        err["loc"] = ("body", "type")
        err["msg"] = f"must be one of: {', '.join(CHANNEL_TYPES)}"
    elif len(loc) >= 3 and loc[0] == "body" and loc[1] in CHANNEL_TYPES:
        err["loc"] = ("body", *loc[2:])
    return err


router = APIRouter(prefix="/v1/channels", tags=["channels"], route_class=_ChannelRoute)

ChannelsRead = Annotated[Principal, require("channels:read")]
ChannelsWrite = Annotated[Principal, require("channels:write")]

NOT_FOUND = not_found("channel-not-found")

_READ_MODELS: dict[str, type[BaseModel]] = {
    "voice": VoiceChannelRead,
    "webchat": WebchatChannelRead,
    "email": EmailChannelRead,
    "sms": SmsChannelRead,
    "whatsapp": WhatsappChannelRead,
    "wechat": WechatChannelRead,
    "messenger": MessengerChannelRead,
}
_CREATED_MODELS: dict[str, type[BaseModel]] = {
    "sms": SmsChannelCreated,
    "whatsapp": WhatsappChannelCreated,
    "wechat": WechatChannelCreated,
    "messenger": MessengerChannelCreated,
}


def _config(channel: Channel, numbers: list[uuid.UUID]) -> BaseModel:
    c = channel.config
    # Channels made before routing targets existed have neither key: both null.
    target = {"queue_id": c.get("queue_id"), "flow_id": c.get("flow_id")}
    match channel.type:
        case "voice":
            return VoiceConfigRead(phone_number_ids=numbers)
        case "webchat":
            return WebchatConfigRead(
                widget_key=c["widget_key"],
                allowed_origins=c["allowed_origins"],
                greeting=c.get("greeting"),
                theme=c.get("theme"),
                **target,
            )
        case "email":
            return EmailConfigRead(
                local_part=c["local_part"],
                address=c["address"],
                reply_from=c["reply_from"],
                display_name=c.get("display_name"),
                **target,
            )
        case "sms":
            return SmsConfigRead(
                provider=c["provider"],
                provider_account_id=c["provider_account_id"],
                phone_number_ids=numbers,
                **target,
            )
    return ProviderConfigRead(
        provider=c["provider"],
        provider_account_id=c["provider_account_id"],
        templates=c.get("templates"),
        **target,
    )


def _body(
    channel: Channel, numbers: list[uuid.UUID], *, webhook_secret: str | None = None
) -> dict[str, Any]:
    """The JSON a client sees. Only ``_CREATED_MODELS`` carry a webhook secret, and only
    the create and rotate-webhook-secret routes pass one."""
    fields: dict[str, Any] = {
        "id": channel.id,
        "type": channel.type,
        "name": channel.name,
        "enabled": channel.enabled,
        "version": channel.version,
        "created_at": channel.created_at,
        "updated_at": channel.updated_at,
        "config": _config(channel, numbers),
    }
    model = _READ_MODELS[channel.type]
    if channel.type in _CREATED_MODELS:
        fields["credentials_set"] = channel.credentials_enc is not None
        fields["credential_fields"] = list(channel.config.get("credential_fields", []))
        if webhook_secret is not None:
            model = _CREATED_MODELS[channel.type]
            fields["webhook_secret"] = webhook_secret
    out: dict[str, Any] = model.model_validate(fields).model_dump(mode="json")
    return {"id": out.pop("id"), "type": out.pop("type"), "name": out.pop("name")} | out


def _without_secret(body: dict[str, Any]) -> dict[str, Any]:
    return {**body, "webhook_secret": None} if "webhook_secret" in body else body


def _headers(channel: Channel, *, secret: bool = False) -> dict[str, str]:
    headers = {"ETag": etag(channel.version)}
    if secret:
        headers["Cache-Control"] = "no-store"
    return headers


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=ChannelCreated,
    summary="Create a channel",
    responses={
        201: {
            "description": "Created. For sms, whatsapp, wechat and messenger the body "
            "carries the webhook secret: the only time it is shown.",
            "headers": ETAG_HEADER | NO_STORE_HEADER,
            "content": {"application/json": {"examples": CREATED_EXAMPLES}},
        },
        403: scope_or_quota("channels:write", "channels", 5),
        409: problem(
            "The name, inbound address or provider account is taken, or a phone number "
            "already serves another channel of this type",
            NAME_TAKEN,
            ADDRESS_TAKEN,
            NUMBER_IN_USE,
        ),
        422: problem(
            "Bad input: the problem names the field. A routing target (queue_id or flow_id, "
            "not both) must be this tenant's queue taking the channel's routing channel, or "
            "its published flow",
            BAD_CONFIG,
            UNKNOWN_NUMBER,
            UNKNOWN_QUEUE,
            QUEUE_NOT_TAKING,
            FLOW_NOT_PUBLISHED,
        ),
    },
)
async def create_channel(
    body: Annotated[ChannelCreate, Body(openapi_examples=CREATE_EXAMPLES)],
    request: Request,
    session: SessionDep,
    principal: ChannelsWrite,
    idem: IdempotencyDep,
    cipher: CipherDep,
) -> Response:
    """Create a voice, webchat, email, sms, whatsapp, wechat or messenger channel.

    Credentials are write-only. The webhook secret of a messaging channel is in this
    response only; an Idempotency-Key replay answers the same body with
    ``webhook_secret: null`` (secrets are not kept for replays): rotate it if lost.
    """
    if (replay := await idem.replay()) is not None:
        return replay
    created = await service.create(
        session,
        principal.scope,
        body,
        plan=principal.tenant.plan,
        cipher=cipher,
        inbound_email_domain=request.app.state.settings.inbound_email_domain,
    )
    channel = created.channel
    audit(
        request,
        "channel.create",
        "channel",
        channel.id,
        name=channel.name,
        type=channel.type,
        enabled=channel.enabled,
        config=_public_config(channel),
        phone_number_ids=[str(n) for n in created.phone_number_ids] or None,
        credentials_set=(channel.credentials_enc is not None) if created.webhook_secret else None,
    )
    full = _body(channel, created.phone_number_ids, webhook_secret=created.webhook_secret)
    headers = _headers(channel, secret=created.webhook_secret is not None)
    await idem.respond(201, _without_secret(full))  # the replay record keeps no secret
    return JSONResponse(full, status_code=201, headers=headers)


def _public_config(channel: Channel) -> dict[str, Any]:
    return dict(channel.config)  # never holds a secret: see app/channels/secrets.py


@router.get(
    "",
    response_model=ChannelPage,
    summary="List channels",
    responses={
        200: {
            "content": {
                "application/json": {"example": {"items": [READ_EXAMPLE], "next_cursor": None}}
            }
        }
    },
)
async def list_channels(
    session: SessionDep,
    principal: ChannelsRead,
    page: Annotated[PageParams, Depends(page_params)],
    type: Annotated[ChannelType | None, Query(description="Only channels of this type")] = None,
) -> Response:
    """The tenant's channels, newest first. Secrets are never in it."""
    rows = await repository.list_page(session, principal.scope, page.limit, page.after_id, type)
    rows, next_cursor = page_rows(rows, page.limit)
    numbers = await channel_numbers.numbers_for(session, principal.scope, rows)
    return JSONResponse(
        {"items": [_body(c, numbers.get(c.id, [])) for c in rows], "next_cursor": next_cursor}
    )


async def _one(session: SessionDep, principal: Principal, channel: Channel) -> list[uuid.UUID]:
    numbers = await channel_numbers.numbers_for(session, principal.scope, [channel])
    return numbers.get(channel.id, [])


@router.get(
    "/{channel_id}",
    response_model=ChannelRead,
    summary="Get a channel",
    responses={
        200: READ_WITH_ETAG,
        404: NOT_FOUND,
    },
)
async def get_channel(
    channel_id: uuid.UUID, session: SessionDep, principal: ChannelsRead
) -> Response:
    channel = await service.get(session, principal.scope, channel_id)
    numbers = await _one(session, principal, channel)
    return with_etag(_body(channel, numbers), channel.version)


@router.patch(
    "/{channel_id}",
    response_model=ChannelRead,
    summary="Change a channel",
    responses={
        200: READ_WITH_ETAG,
        404: NOT_FOUND,
        409: problem(
            "The new name is taken, or a phone number serves another channel of this type",
            NAME_TAKEN,
            NUMBER_IN_USE,
        ),
        412: PRECONDITION_FAILED,
        422: problem(
            "Bad input, a setting of another channel type, a change of type, or a routing "
            "target that cannot take the channel's conversations",
            BAD_CONFIG,
            TYPE_IMMUTABLE,
            UNKNOWN_NUMBER,
            UNKNOWN_QUEUE,
            QUEUE_NOT_TAKING,
            FLOW_NOT_PUBLISHED,
        ),
    },
)
async def update_channel(
    channel_id: uuid.UUID,
    body: ChannelUpdate,
    request: Request,
    session: SessionDep,
    principal: ChannelsWrite,
    if_match: IfMatchDep,
    cipher: CipherDep,
) -> Response:
    """Change the name, enabled, the type's settings, or replace the credentials
    (write-only). The type, inbound address, provider and provider account are fixed.
    Send If-Match with the ETag you read; a stale one answers 412."""
    updated = await service.update(
        session, principal.scope, channel_id, body, if_match, cipher=cipher
    )
    channel = updated.channel
    changes: dict[str, Any] = {}
    for name in updated.changed:
        if name == "credentials":
            changes["credentials_replaced"] = True
        elif name == "config.phone_number_ids":
            changes[name] = [str(n) for n in updated.phone_number_ids]
        elif name.startswith("config."):
            changes[name] = channel.config.get(name.removeprefix("config."))
        else:
            changes[name] = getattr(channel, name)
    audit(request, "channel.update", "channel", channel.id, changed=updated.changed, **changes)
    return with_etag(_body(channel, updated.phone_number_ids), channel.version)


@router.delete(
    "/{channel_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a channel",
    responses={
        404: NOT_FOUND,
        409: problem("Something still uses the channel", IN_USE),
        412: PRECONDITION_FAILED,
    },
)
async def delete_channel(
    channel_id: uuid.UUID,
    request: Request,
    session: SessionDep,
    principal: ChannelsWrite,
    if_match: IfMatchDep,
) -> Response:
    """Delete the channel; its inbound addresses stop resolving and its numbers are
    detached (the numbers themselves stay claimed)."""
    channel = await service.delete(session, principal.scope, channel_id, if_match)
    audit(request, "channel.delete", "channel", channel.id, name=channel.name, type=channel.type)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.post(
    "/{channel_id}/rotate-widget-key",
    response_model=WebchatChannelRead,
    summary="Issue a new widget key (webchat)",
    responses={
        200: WITH_ETAG,
        404: NOT_FOUND,
        409: problem("Not a webchat channel", TYPE_MISMATCH),
        412: PRECONDITION_FAILED,
    },
)
async def rotate_widget_key(
    channel_id: uuid.UUID,
    request: Request,
    session: SessionDep,
    principal: ChannelsWrite,
    if_match: IfMatchDep,
    idem: IdempotencyDep,
) -> Response:
    """Replace the public widget key; the old key stops working at once, so update the
    embed snippet on your pages."""
    if (replay := await idem.replay()) is not None:
        return replay
    channel = await service.rotate_widget_key(session, principal.scope, channel_id, if_match)
    audit(
        request,
        "channel.rotate_widget_key",
        "channel",
        channel.id,
        widget_key=channel.config["widget_key"],
    )
    return await idem.respond(200, _body(channel, []), headers=_headers(channel))


@router.post(
    "/{channel_id}/rotate-webhook-secret",
    response_model=WebhookSecretIssued,
    summary="Issue a new webhook secret (sms, whatsapp, wechat, messenger)",
    responses={
        200: {
            "description": "The new secret, shown this once",
            "headers": ETAG_HEADER | NO_STORE_HEADER,
        },
        404: NOT_FOUND,
        409: problem("Not a messaging channel", TYPE_MISMATCH),
        412: PRECONDITION_FAILED,
    },
)
async def rotate_webhook_secret(
    channel_id: uuid.UUID,
    request: Request,
    session: SessionDep,
    principal: ChannelsWrite,
    if_match: IfMatchDep,
    idem: IdempotencyDep,
    cipher: CipherDep,
) -> Response:
    """Replace the webhook secret and show the new one, once; the old one stops
    verifying at once. An Idempotency-Key replay answers with ``webhook_secret: null``."""
    if (replay := await idem.replay()) is not None:
        return replay
    channel, secret = await service.rotate_webhook_secret(
        session, principal.scope, channel_id, if_match, cipher=cipher
    )
    audit(request, "channel.rotate_webhook_secret", "channel", channel.id)
    numbers = await _one(session, principal, channel)
    full = _body(channel, numbers, webhook_secret=secret)
    await idem.respond(200, _without_secret(full))
    return JSONResponse(full, headers=_headers(channel, secret=True))
