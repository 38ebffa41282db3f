"""A new customer's first messages arriving together (a provider delivering a burst
in parallel): one profile, one identity, one conversation, every message kept once and
metered once, and no profile left behind by the requests that lost the race to create
it."""

from __future__ import annotations

import asyncio
import secrets
import time

from tests.messaging.ingress import create_channel, messaging_tenant, post_sandbox

CUSTOMER = "+14155550199"


async def test_a_burst_of_first_messages_makes_one_customer_and_one_conversation(client, clean_db):
    tenant = await messaging_tenant(client)
    account = "sbx" + secrets.token_hex(6)
    channel = await create_channel(client, tenant, "sms", "sandbox", account)
    path = f"/v1/webhooks/sms/sandbox/{account}"
    texts = [f"burst {i}" for i in range(6)]

    answers = await asyncio.gather(
        *(
            post_sandbox(
                client,
                path,
                {"message_id": f"burst-{i}", "from": CUSTOMER, "to": account, "text": t},
                channel["webhook_secret"],
                int(time.time()),
            )
            for i, t in enumerate(texts)
        )
    )

    assert [r.status_code for r in answers] == [200] * len(texts)
    assert all(r.json()["received"] == 1 for r in answers)
    assert await clean_db.fetchval("SELECT count(*) FROM customers") == 1
    assert await clean_db.fetchval("SELECT count(*) FROM customer_identities") == 1
    assert await clean_db.fetchval("SELECT count(*) FROM conversations") == 1
    bodies = await clean_db.fetch("SELECT body FROM messages ORDER BY body")
    assert [r["body"] for r in bodies] == texts
    metered = await clean_db.fetchval(
        "SELECT count(*) FROM usage_events u JOIN messages m ON u.tenant_id = m.tenant_id "
        "AND u.idempotency_key = 'message:' || m.id::text"
    )
    assert metered == len(texts)
    kinds = await clean_db.fetch("SELECT kind, count(*) AS n FROM timeline_events GROUP BY kind")
    assert {r["kind"]: r["n"] for r in kinds} == {
        "customer.created": 1,
        "conversation.opened": 1,
        "message.received": len(texts),
    }
    events = await clean_db.fetchval(
        "SELECT count(*) FROM conversation_events WHERE topic = 'message.created'"
    )
    assert events == len(texts)
