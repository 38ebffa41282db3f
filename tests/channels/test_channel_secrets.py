"""Credentials and webhook secrets go in and never come out: not in any read, list or
update answer, not in the audit log, not in the logs, not in the replay record, and the
database holds only ciphertext."""

from __future__ import annotations

import logging
import uuid

import pytest

from tests.channels.conftest import create_channel
from tests.conftest import create_tenant


def marked(label: str) -> str:
    """A credential value that cannot occur by chance."""
    return f"S3CRET-{label}-{uuid.uuid4().hex}"


async def test_secrets_never_leave_the_server(client, admin_conn, caplog):
    caplog.set_level(logging.DEBUG)
    t = await create_tenant(client)
    h = t["headers"]
    secrets: list[str] = []

    def creds(*names: str) -> dict[str, str]:
        out = {n: marked(n) for n in names}
        secrets.extend(out.values())
        return out

    bodies = [
        {
            "type": "sms",
            "name": "SMS",
            "config": {"provider": "twilio", "provider_account_id": "AC42"},
            "credentials": creds("auth_token"),
        },
        {
            "type": "whatsapp",
            "name": "WhatsApp",
            "config": {"provider": "meta", "provider_account_id": "1098"},
            "credentials": creds("access_token", "app_secret"),
        },
        {
            "type": "wechat",
            "name": "WeChat",
            "config": {"provider_account_id": "wx42"},
            "credentials": creds("app_secret", "token", "encoding_aes_key"),
        },
        {
            "type": "messenger",
            "name": "Messenger",
            "config": {"provider_account_id": "1044"},
            "credentials": creds("page_access_token", "app_secret"),
        },
    ]
    webhook_secrets: list[str] = []
    answers: list[str] = []
    channels = []
    for i, body in enumerate(bodies):
        ch = await create_channel(client, t, body, **{"Idempotency-Key": f"create-{i}"})
        webhook_secrets.append(ch["webhook_secret"])
        channels.append(ch)
        # The create answer shows the webhook secret, never the credentials.
        assert not any(s in str(ch) for s in secrets)
        answers.append(
            (
                await client.post(
                    "/v1/channels", json=body, headers=h | {"Idempotency-Key": f"create-{i}"}
                )
            ).text
        )

    for ch in channels:
        r = await client.patch(
            f"/v1/channels/{ch['id']}",
            json={"name": ch["name"] + " (new)", "credentials": creds(*ch["credential_fields"])},
            headers=h,
        )
        assert r.status_code == 200, r.text
        answers.append(r.text)
        answers.append((await client.get(f"/v1/channels/{ch['id']}", headers=h)).text)
        r = await client.post(f"/v1/channels/{ch['id']}/rotate-webhook-secret", headers=h)
        webhook_secrets.append(r.json()["webhook_secret"])
        answers.append((await client.get(f"/v1/channels/{ch['id']}", headers=h)).text)
    answers.append((await client.get("/v1/channels", headers=h)).text)
    # Refusals quote no secret either.
    r = await client.post(
        "/v1/channels",
        json=bodies[0]
        | {"name": "SMS", "credentials": {"auth_token": secrets[0], "x": secrets[1]}},
        headers=h,
    )
    assert r.status_code == 422
    answers.append(r.text)
    r = await client.post(
        "/v1/channels",
        json=bodies[0] | {"credentials": {"auth_token": secrets[0] + "\x00"}},
        headers=h,
    )
    assert r.status_code == 422
    answers.append(r.text)

    audit = (await client.get("/v1/audit-events?limit=200", headers=h)).json()["items"]
    assert {e["action"] for e in audit} >= {
        "channel.create",
        "channel.update",
        "channel.rotate_webhook_secret",
    }
    replays = [
        r["response"]
        for r in await admin_conn.fetch("SELECT response::text AS response FROM idempotency_keys")
    ]
    rows = await admin_conn.fetch(
        "SELECT config::text AS config, credentials_enc, webhook_secret_enc FROM channels"
    )
    assert len(rows) == 4
    for row in rows:
        assert row["credentials_enc"].startswith("v1:")
        assert row["webhook_secret_enc"].startswith("v1:")
    stored = [str(tuple(r)) for r in rows]

    everything = {
        "answers": "\n".join(answers),
        "audit": str(audit),
        "replays": "\n".join(replays),
        "database": "\n".join(stored),
        "logs": caplog.text,
    }
    for where, text in everything.items():
        for secret in secrets:
            assert secret not in text, (where, secret)
    for where in ("audit", "replays", "database", "logs"):
        for secret in webhook_secrets:
            assert secret not in everything[where], (where, secret)
    # Reads after creation never show a webhook secret.
    assert not any(s in "\n".join(answers[4:]) for s in webhook_secrets[:4])


async def test_a_ciphertext_moved_to_another_channel_does_not_decrypt(client, app, admin_conn):
    from app.channels import secrets as channel_secrets
    from app.channels.models import Channel
    from app.core.crypto import DecryptionError

    t = await create_tenant(client)
    body = {
        "type": "messenger",
        "name": "A",
        "config": {"provider_account_id": "1"},
        "credentials": {"page_access_token": "p", "app_secret": "s"},
    }
    a = await create_channel(client, t, body)
    b = await create_channel(
        client, t, body | {"name": "B", "config": {"provider_account_id": "2"}}
    )
    row = await admin_conn.fetchrow("SELECT * FROM channels WHERE id = $1", uuid.UUID(a["id"]))
    # B's row with A's ciphertext: bound to A's id, it fails rather than decrypting.
    moved = Channel(
        tenant_id=row["tenant_id"],
        id=uuid.UUID(b["id"]),
        type="messenger",
        name="B",
        credentials_enc=row["credentials_enc"],
    )
    with pytest.raises(DecryptionError):
        channel_secrets.read_credentials(app.state.cipher, moved)
