"""Queues for the routing-profile tests.

The queues API is being written alongside; until it lands, queues are inserted through
their model. Switch ``make_queue`` to ``POST /v1/queues`` once it exists: nothing else
here depends on how a queue comes to be.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from app.db.tenant import bind_tenant, mint_scope
from app.queues.models import Queue

MakeQueue = Callable[[dict[str, Any], str], Awaitable[str]]


@pytest.fixture
def make_queue(app: Any) -> MakeQueue:
    async def make(tenant: dict[str, Any], name: str) -> str:
        scope = mint_scope(uuid.UUID(tenant["tenant"]["id"]))
        async with app.state.session_factory() as session, session.begin():
            await bind_tenant(session, scope)
            queue = Queue(tenant_id=scope.tenant_id, name=name, channels=["voice", "chat"])
            session.add(queue)
        return str(queue.id)

    return make
