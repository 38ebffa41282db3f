"""One LISTEN connection per API process on ``sb_conversation`` (app/conversations/
events.py announces ``<tenant>:<conversation>:<event id>``), waking the customer
streams of that conversation (app/webchat/stream.py). Each stream then reads its
events from ``conversation_events`` itself, bound to its tenant.

Like the agents' OutboxHub (app/routing/stream.py), a NotifyHub (app/core/notify_hub.py):
when the connection drops, or stops answering a ping, it reconnects and has every
subscriber catch up from the table, so a lost notification costs a read, never an event.

Order: every change that posts a conversation event holds the conversation's row lock
(receive, replies, routing, read receipts, typing), so one conversation's event ids
commit in order, and "everything after id N" is exactly what a client that saw N lacks.
"""

from __future__ import annotations

from app.config import Settings
from app.conversations.events import CONVERSATION_CHANNEL
from app.core.notify_hub import NotifyHub


class ConversationHub(NotifyHub):
    """Subscribers keyed by (tenant, conversation)."""

    def __init__(self, settings: Settings, url: str) -> None:
        super().__init__(
            settings,
            url,
            channel=CONVERSATION_CHANNEL,
            name="conversation",
            application_name="switchboard-conversation-hub",
        )
