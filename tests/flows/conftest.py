"""Flow test helpers. Queues and business hours belong to other domains: they are
inserted as rows in one fixture (``provision``), easy to switch to their APIs later."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import pytest

from app.business_hours.models import BusinessHours
from app.db.tenant import bind_tenant, mint_scope
from app.queues.models import Queue

Provision = Callable[[dict[str, Any]], Awaitable[dict[str, str]]]


@pytest.fixture
def provision(app: Any, client: httpx.AsyncClient) -> Provision:
    """A tenant's office hours, Sales and Support queues and a VIP skill; their ids."""

    async def make(tenant: dict[str, Any]) -> dict[str, str]:
        tenant_id = uuid.UUID(tenant["tenant"]["id"])
        hours = BusinessHours(
            tenant_id=tenant_id,
            name="Office",
            timezone="Europe/London",
            weekly={"mon": [["09:00", "17:00"]]},
        )
        sales = Queue(tenant_id=tenant_id, name="Sales", channels=["voice", "chat"])
        support = Queue(tenant_id=tenant_id, name="Support", channels=["voice", "chat"])
        async with app.state.session_factory() as session, session.begin():
            await bind_tenant(session, mint_scope(tenant_id))
            session.add_all([hours, sales, support])
        r = await client.post("/v1/skills", json={"name": "VIP"}, headers=tenant["headers"])
        assert r.status_code == 201, r.text
        return {
            "hours": str(hours.id),
            "sales": str(sales.id),
            "support": str(support.id),
            "vip": r.json()["id"],
        }

    return make


def ivr(ids: dict[str, str], *, greeting: str = "Thanks for calling.") -> dict[str, Any]:
    """A complete voice flow over the provisioned ids."""
    return {
        "start": "welcome",
        "nodes": {
            "welcome": {"type": "say", "text": greeting, "next": "hours"},
            "hours": {
                "type": "check_hours",
                "business_hours_id": ids["hours"],
                "open": "menu",
                "closed": "closed",
            },
            "menu": {
                "type": "menu",
                "prompt": "Sales 1, support 2.",
                "options": {"1": "sales", "2": "support"},
                "on_invalid": "support",
            },
            "sales": {
                "type": "route_to_queue",
                "queue_id": ids["sales"],
                "priority": 2,
                "extra_skills": [{"skill_id": ids["vip"], "min_proficiency": 3}],
            },
            "support": {"type": "route_to_queue", "queue_id": ids["support"]},
            "closed": {"type": "say", "text": "We are closed.", "next": "bye"},
            "bye": {"type": "end"},
        },
    }
