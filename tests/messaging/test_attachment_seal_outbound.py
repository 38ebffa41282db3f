"""An agent's file replaced in storage between the reply and its delivery (the upload
URL is still valid) is not sent: the message fails with the reason, and the provider is
never asked to fetch the replacement."""

from __future__ import annotations

import uuid
from datetime import timedelta

from app.conversations.delivery import retry_due
from app.storage.base import tenant_key
from tests.messaging.ingress import message, reply
from tests.messaging.test_outbound_senders import twilio_conversation


async def test_a_file_replaced_before_delivery_fails_the_message(app, client, clean_db, wired):
    tenant, conv_id, sid = await twilio_conversation(app, client, clean_db, wired)
    store = app.state.object_store
    tenant_id = uuid.UUID(tenant["tenant"]["id"])
    attachment_id = uuid.uuid4()
    key = tenant_key(tenant_id, "conversations", str(conv_id), str(attachment_id), "invoice.pdf")
    await store.put(key, b"%PDF-1.7 invoice", "application/pdf")
    await clean_db.execute(
        "INSERT INTO attachments (tenant_id, id, conversation_id, object_key, filename, "
        "content_type, max_bytes, status, uploaded_by, created_at) "
        "VALUES ($1, $2, $3, $4, 'invoice.pdf', 'application/pdf', 1000, 'pending', 'agent', now())",
        tenant_id,
        attachment_id,
        conv_id,
        key,
    )
    wired.fail_next(503)  # the first try fails transiently: the message waits for a retry
    sent = await reply(app, tenant, conv_id, "Your invoice", attachment_ids=[attachment_id])
    assert (await message(clean_db, sent.id))["status"] == "queued"
    sealed = await clean_db.fetchval("SELECT etag FROM attachments WHERE id = $1", attachment_id)
    assert sealed == (await store.head(key)).etag

    await store.put(key, b"%PDF-1.7 other!!", "application/pdf")  # same size, other bytes
    await clean_db.execute(
        "UPDATE messages SET next_attempt_at = now() - interval '1 second' WHERE id = $1",
        sent.id,
    )
    tried = await retry_due(
        app.state.session_factory,
        app.state.settings,
        store,
        tenant_id,
        older_than=timedelta(0),
    )

    assert tried == 1
    row = await message(clean_db, sent.id)
    assert row["status"] == "failed"
    assert row["error"] == (
        f"attachment {attachment_id}: The file was replaced or removed after it was sent, "
        "so it is not served."
    )
    # Only the first (failed) try reached Twilio.
    assert len(wired.made(rf"/2010-04-01/Accounts/{sid}/Messages\.json")) == 1
