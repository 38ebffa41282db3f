"""Conversation messages are counted by tenant, channel, direction and outcome on the
API's /metrics, wherever the work happened (a webhook request, a background delivery)."""

from __future__ import annotations

import time

from tests.core.test_telemetry import _samples, _value
from tests.messaging.ingress import only_message, post_sandbox, reply
from tests.messaging.test_webhooks_sandbox import sandbox_channel, text

TOTAL = "switchboard_messages_total"


async def test_messages_are_counted_per_tenant_channel_and_outcome(app, client, clean_db):
    tenant, account, secret, path = await sandbox_channel(client)
    tid = tenant["tenant"]["id"]
    r = await post_sandbox(client, path, text(account), secret, int(time.time()))
    assert r.status_code == 200, r.text
    inbound = await only_message(clean_db)
    await reply(app, tenant, inbound["conversation_id"], "On its way.")

    samples = _samples((await client.get("/metrics")).text)
    received = {"tenant_id": tid, "channel": "sms", "direction": "inbound", "outcome": "received"}
    sent = {"tenant_id": tid, "channel": "sms", "direction": "outbound", "outcome": "sent"}
    assert _value(samples, TOTAL, **received) == 1
    assert _value(samples, TOTAL, **sent) == 1
