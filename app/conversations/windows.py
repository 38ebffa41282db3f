"""Meta's messaging windows: WhatsApp and Messenger take a business's free-form message
only within 24 hours of the customer's last message on that channel; after that WhatsApp
takes approved templates only, and Messenger a human agent's reply, tagged HUMAN_AGENT,
for 7 days (docs/decisions/0018). Templates go through Meta, which judges them when
sent, or through Twilio, for those the channel declares (docs/decisions/0019)."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

from app.conversations.agent_schemas import MessageTemplate
from app.core.errors import Conflict, InvalidInput
from app.db.base import utcnow
from app.db.tenant import TenantScope

# Meta's platforms take a free-form business message only within 24 hours of the
# customer's last message on that channel. After that, WhatsApp takes only approved
# templates; Messenger takes a human agent's reply, tagged HUMAN_AGENT, for 7 days.
SERVICE_WINDOW_CHANNELS = frozenset({"whatsapp", "messenger"})
SERVICE_WINDOW = timedelta(hours=24)
HUMAN_AGENT_WINDOW = timedelta(days=7)
HUMAN_AGENT_TAG = "HUMAN_AGENT"


async def last_inbound(
    conn: Any, tenant_id: uuid.UUID, customer_id: uuid.UUID, channel_id: uuid.UUID
) -> Any:
    return await conn.fetchval(
        "SELECT max(created_at) FROM messages WHERE tenant_id = $1 AND customer_id = $2 "
        "AND channel_id = $3 AND direction = 'inbound'",
        tenant_id,
        customer_id,
        channel_id,
    )


async def check_service_window(
    conn: Any,
    scope: TenantScope,
    customer_id: uuid.UUID,
    channel_id: uuid.UUID,
    ctype: str,
    sender_kind: str = "agent",
) -> None:
    """409 ``service-window-closed`` unless Meta takes this free-form message now."""
    last = await last_inbound(conn, scope.tenant_id, customer_id, channel_id)
    human = ctype == "messenger" and sender_kind == "agent"
    window = HUMAN_AGENT_WINDOW if human else SERVICE_WINDOW
    if last is not None and utcnow() - last <= window:
        return
    if ctype == "whatsapp":
        detail = (
            "The customer last wrote on WhatsApp more than 24 hours ago (or never): WhatsApp "
            "takes free-form replies only within 24 hours of the customer's last message. "
            "Send an approved template (template instead of text), reply on another "
            "channel, or wait for the customer to write."
        )
    elif human:
        detail = (
            "The customer last wrote on Messenger more than 7 days ago (or never): "
            "Messenger takes an agent's reply only within 7 days of the customer's last "
            "message. Reply on another channel, or wait for the customer to write."
        )
    else:
        detail = (
            f"The customer last wrote on {ctype} more than 24 hours ago (or never): "
            f"{ctype} takes automated replies only within 24 hours of the customer's last "
            "message (a human agent may answer for 7 days). Reply on another channel, or "
            "wait for the customer to write."
        )
    raise Conflict(detail, code="service-window-closed", field="body.channel_id")


async def messaging_tag(conn: Any, msg: Any) -> str | None:
    """The tag a Messenger message goes out with, judged when it is sent: an agent's
    reply past the 24-hour window is a HUMAN_AGENT message (allowed for 7 days)."""
    if msg["channel"] != "messenger" or msg["sender_kind"] != "agent":
        return None
    last = await last_inbound(conn, msg["tenant_id"], msg["customer_id"], msg["channel_id"])
    if last is not None and utcnow() - last <= SERVICE_WINDOW:
        return None
    return HUMAN_AGENT_TAG


def channel_config(config: Any) -> dict[str, Any]:
    """A channel's config as read from the database (asyncpg may hand JSONB as text)."""
    parsed = json.loads(config) if isinstance(config, str) else config
    return parsed if isinstance(parsed, dict) else {}


def declared_template(config: Any, name: str, language: str) -> dict[str, Any] | None:
    """The template ``name`` in ``language`` as the channel declares it (a Twilio
    WhatsApp channel's ``config.templates``), or None."""
    for item in channel_config(config).get("templates") or []:
        if isinstance(item, dict) and item.get("name") == name and item.get("language") == language:
            return item
    return None


def undeclared_template(
    config: Any, name: str, language: str, parameters: int
) -> tuple[str, str] | None:
    """Why the channel cannot send this template, as (the reply's field, reason), or
    None when it declares it with that many parameters. The rule for channels that
    must name their templates themselves (Twilio sends a Content SID, not a name)."""
    declared = declared_template(config, name, language)
    if declared is None:
        languages = sorted(
            str(t.get("language"))
            for t in channel_config(config).get("templates") or []
            if isinstance(t, dict) and t.get("name") == name
        )
        if languages:
            return "language", (
                f"the channel declares {name} in {', '.join(languages)} only, not {language}"
            )
        return "name", (
            f"the channel declares no template {name} ({language}): add it, with its "
            "Content SID, to the channel's config.templates"
        )
    expected = int(declared.get("parameter_count") or 0)
    if parameters != expected:
        return "parameters", (
            f"{name} ({language}) takes {expected} parameter{'s' if expected != 1 else ''}, "
            f"not {parameters}"
        )
    return None


def check_template(ctype: str, config: Any, template: MessageTemplate) -> None:
    """Templates go out on WhatsApp channels: through Meta's Cloud API, which checks
    the name against WhatsApp Manager when it is sent, or through Twilio's Content API,
    for a template the channel declares with its Content SID and body variables."""
    if ctype != "whatsapp":
        raise InvalidInput(
            f"body.template: templates are sent on WhatsApp channels only, not on {ctype}",
            code="template-not-supported",
            field="body.template",
        )
    provider = str(channel_config(config).get("provider") or "")
    if provider == "meta":
        return
    if provider != "twilio":
        raise InvalidInput(
            "body.template: templates are sent through Meta's WhatsApp Cloud API or "
            f"Twilio only; this channel uses {provider or 'no provider'}",
            code="template-not-supported",
            field="body.template",
        )
    problem = undeclared_template(
        config, template.name, template.language, len(template.parameters)
    )
    if problem is not None:
        part, reason = problem
        field = f"body.template.{part}"
        code = "template-parameters-mismatch" if part == "parameters" else "template-not-declared"
        raise InvalidInput(f"{field}: {reason}", code=code, field=field)
