"""Replay-protection receipts are forgotten after their week, a channel at a time, by
the ingress that writes new ones (under the tenant's row-level security)."""

from __future__ import annotations

import time
import uuid

from app.messaging import ingest
from tests.messaging.ingress import post_sandbox
from tests.messaging.test_webhooks_sandbox import sandbox_channel, text


async def test_expired_receipts_of_the_channel_are_purged(client, clean_db, monkeypatch):
    monkeypatch.setattr(ingest, "PURGE_ONE_IN", 1)  # purge on every claim, for the test
    tenant, account, secret, path = await sandbox_channel(client)
    other, other_account, _, _ = await sandbox_channel(client)
    channel_id = await clean_db.fetchval(
        "SELECT channel_id FROM channel_addresses WHERE address LIKE $1", f"%:{account}"
    )
    other_id = await clean_db.fetchval(
        "SELECT channel_id FROM channel_addresses WHERE address LIKE $1", f"%:{other_account}"
    )
    for tid, cid, key, days in (
        (tenant["tenant"]["id"], channel_id, "msg:old", 8),
        (tenant["tenant"]["id"], channel_id, "msg:young", 6),
        (other["tenant"]["id"], other_id, "msg:old", 8),  # another tenant's: not ours
    ):
        await clean_db.execute(
            "INSERT INTO webhook_receipts (tenant_id, channel_id, key, received_at) "
            "VALUES ($1, $2, $3, now() - make_interval(days => $4))",
            uuid.UUID(tid),
            cid,
            key,
            days,
        )
    r = await post_sandbox(client, path, text(account), secret, int(time.time()))
    assert r.status_code == 200, r.text
    left = await clean_db.fetch("SELECT channel_id, key FROM webhook_receipts ORDER BY key")
    keys = {(row["channel_id"], row["key"]) for row in left}
    assert (channel_id, "msg:old") not in keys
    assert (channel_id, "msg:young") in keys
    assert (other_id, "msg:old") in keys
