"""The sandbox SMS provider's webhooks (Switchboard's own signature scheme): messages,
receipts, stale and forged requests, size and shape limits, and the ingress metrics."""

from __future__ import annotations

import secrets
import time
from typing import Any

from tests.messaging.ingress import (
    counts,
    create_channel,
    message,
    messaging_tenant,
    only_message,
    post_sandbox,
    reply,
)

CUSTOMER = "+14155550142"


async def sandbox_channel(client) -> tuple[dict[str, Any], str, str, str]:
    tenant = await messaging_tenant(client)
    account = "sbx" + secrets.token_hex(6)
    channel = await create_channel(client, tenant, "sms", "sandbox", account)
    return tenant, account, channel["webhook_secret"], f"/v1/webhooks/sms/sandbox/{account}"


def text(account: str, body: str = "Where is my parcel?", **extra: Any) -> dict[str, Any]:
    return {
        "message_id": "sbx-" + secrets.token_hex(8),
        "from": CUSTOMER,
        "to": account,
        "text": body,
    } | extra


async def test_a_message_a_replay_and_the_answer_counts(client, clean_db):
    _, account, secret, path = await sandbox_channel(client)
    payload = text(account, display_name="Ana")

    r = await post_sandbox(client, path, payload, secret, int(time.time()))
    again = await post_sandbox(client, path, payload, secret, int(time.time()))

    assert r.status_code == 200
    assert r.json() == {"received": 1, "duplicates": 0, "receipts": 0, "unmatched": 0, "refused": 0}
    assert again.status_code == 200 and again.json()["duplicates"] == 1
    assert again.json()["received"] == 0
    msg = await only_message(clean_db)
    assert msg["body"] == "Where is my parcel?" and msg["to_address"] == account
    assert await clean_db.fetchval("SELECT display_name FROM customers") == "Ana"
    assert await clean_db.fetchval("SELECT count(*) FROM usage_events") == 1


async def test_stale_forged_and_malformed_requests(client, clean_db):
    _, account, secret, path = await sandbox_channel(client)
    before = await counts(clean_db)

    stale = await post_sandbox(client, path, text(account), secret, int(time.time()) - 3600)
    forged = await post_sandbox(client, path, text(account), "whsec_guess", int(time.time()))
    other_account = await post_sandbox(client, path, text("someone-else"), secret, int(time.time()))
    not_json = await client.post(path, content=b"{", headers={"Content-Type": "application/json"})

    assert stale.status_code == 403 and stale.json()["code"] == "stale-request"
    assert forged.status_code == 403 and forged.json()["code"] == "signature-invalid"
    assert secret not in forged.text
    assert other_account.status_code == 400
    assert other_account.headers["content-type"] == "application/problem+json"
    assert other_account.json()["code"] == "malformed-webhook"
    assert not_json.status_code == 403  # unsigned: refused before it is read
    assert await counts(clean_db) == before


async def test_an_address_that_is_not_a_phone_number_is_not_a_customer(client, clean_db):
    _, account, secret, path = await sandbox_channel(client)
    r = await post_sandbox(
        client, path, text(account) | {"from": "ACME-PROMO"}, secret, int(time.time())
    )
    assert r.status_code == 200 and r.json()["refused"] == 1
    assert await clean_db.fetchval("SELECT count(*) FROM customers") == 0


async def test_an_oversized_body_is_refused(client, clean_db):
    _, account, secret, path = await sandbox_channel(client)
    r = await post_sandbox(client, path, text(account, "x" * 1_100_000), secret, int(time.time()))
    assert r.status_code == 413
    assert r.headers["content-type"] == "application/problem+json"
    assert await clean_db.fetchval("SELECT count(*) FROM messages") == 0


async def test_a_sandbox_reply_and_its_receipts(app, client, clean_db):
    tenant, account, secret, path = await sandbox_channel(client)
    await post_sandbox(client, path, text(account), secret, int(time.time()))
    conv_id = await clean_db.fetchval("SELECT id FROM conversations")

    sent = await reply(app, tenant, conv_id, "It is out for delivery.")

    row = await message(clean_db, sent.id)
    assert row["status"] == "sent" and row["provider_message_id"].startswith("sandbox-")
    receipt = {"receipt": {"message_id": row["provider_message_id"], "status": "delivered"}}
    r = await post_sandbox(client, path, receipt, secret, int(time.time()))
    assert r.status_code == 200 and r.json()["receipts"] == 1
    assert (await message(clean_db, sent.id))["status"] == "delivered"
    again = await post_sandbox(client, path, receipt, secret, int(time.time()))
    assert again.json() == {
        "received": 0,
        "duplicates": 1,
        "receipts": 0,
        "unmatched": 0,
        "refused": 0,
    }


async def test_outcomes_are_counted_per_tenant(client, clean_db):
    tenant, account, secret, path = await sandbox_channel(client)
    await post_sandbox(client, path, text(account), secret, int(time.time()))
    await post_sandbox(client, path, text(account), "whsec_guess", int(time.time()))
    await post_sandbox(client, "/v1/webhooks/sms/sandbox/nobody", text("nobody"), "x", 1)

    scrape = (await client.get("/metrics")).text

    tid = tenant["tenant"]["id"]
    for outcome, tenant_label in (
        ("accepted", tid),
        ("signature-invalid", tid),
        ("not-found", ""),
    ):
        line = (
            f'switchboard_webhook_requests_total{{channel_type="sms",outcome="{outcome}",'
            f'provider="sandbox",tenant_id="{tenant_label}"}}'
        )
        assert line in scrape, outcome
