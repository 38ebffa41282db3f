"""Meta's messaging windows: WhatsApp and Messenger take a business's free-form message
only within 24 hours of the customer's last message on that channel; after that WhatsApp
takes approved templates only, and Messenger a human agent's reply, tagged HUMAN_AGENT,
for 7 days (docs/decisions/0018)."""

from __future__ import annotations

import json
import uuid
from datetime import timedelta
from typing import Any

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


def check_template(ctype: str, config: Any) -> None:
    """Templates go out on WhatsApp channels through Meta's Cloud API only."""
    if ctype != "whatsapp":
        raise InvalidInput(
            f"body.template: templates are sent on WhatsApp channels only, not on {ctype}",
            code="template-not-supported",
            field="body.template",
        )
    config = json.loads(config) if isinstance(config, str) else (config or {})
    provider = str(config.get("provider") or "")
    if provider != "meta":
        raise InvalidInput(
            "body.template: templates are sent through Meta's WhatsApp Cloud API only; "
            f"this channel uses {provider or 'no provider'}",
            code="template-not-supported",
            field="body.template",
        )
