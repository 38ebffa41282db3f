"""Conversations for agents and supervisors (REST): read them with their messages,
events and offer context (``reading_endpoints``); reply, note, type, upload
(``message_endpoints``); transfer, consult, resolve, set pending, reopen, monitor
(``handover_endpoints``). The agent WebSocket runs the same actions (``conversation.*``
commands, ``app.conversations.actions.dispatch``).
"""

from __future__ import annotations

from fastapi import APIRouter

from app.conversations import handover_endpoints, message_endpoints, reading_endpoints

router = APIRouter()
for part in (reading_endpoints, message_endpoints, handover_endpoints):
    router.include_router(part.router)
