"""Amazon SNS SMS end to end: SNS-signed inbound SMS (real RSA signatures, the
certificate served from a local host the settings allow) opens a routed conversation;
forgeries, foreign certificate hosts, foreign topics, stale and replayed posts change
nothing; subscription confirmations are confirmed only on an allowed host; replies go
out through ``sns:Publish`` on a moto server."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError

from app.messaging.providers import ProviderError, adapter_for
from app.messaging.providers.aws_sms import (
    AwsSmsAdapter,
    SigningCertificates,
    SnsPolicy,
    parse_sns_base,
    publish_error,
    sns_base,
)
from tests.messaging.fake_sns import FakeSns, headers
from tests.messaging.ingress import (
    counts,
    create_channel,
    message,
    messaging_tenant,
    only_message,
    reply,
)
from tests.moto_s3 import REGION, start_moto

CUSTOMER = "+14155550199"
OUR_NUMBER = "+14155550100"
SECRET = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"


@pytest.fixture(scope="module")
def sns() -> Iterator[FakeSns]:
    fake = FakeSns().start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    server, endpoint_url = start_moto()
    try:
        yield endpoint_url
    finally:
        server.stop()


@pytest.fixture
def aws(app: Any, sns: FakeSns, moto_endpoint: str) -> Iterator[FakeSns]:
    """The app trusts the local certificate host (127.0.0.1, plain http) and sends SMS
    to moto (the app's settings are session-wide: restored afterwards)."""
    settings = app.state.settings
    wanted = {
        "aws_sns_cert_host_pattern": r"127\.0\.0\.1",
        "aws_sns_allow_http_cert": True,
        "aws_sms_endpoint_url": moto_endpoint,
        "aws_sms_region": REGION,
    }
    saved = {name: getattr(settings, name) for name in wanted}
    for name, value in wanted.items():
        setattr(settings, name, value)
    try:
        yield sns
    finally:
        for name, value in saved.items():
            setattr(settings, name, value)


async def sms_channel(client: httpx.AsyncClient) -> tuple[dict[str, Any], str, str]:
    tenant = await messaging_tenant(client)
    topic = f"inbound-sms-{tenant['tenant']['id'][:8]}"
    await create_channel(
        client,
        tenant,
        "sms",
        "aws",
        topic,
        {"access_key_id": "AKIAIOSFODNN7EXAMPLE", "secret_access_key": SECRET},
    )
    return tenant, topic, f"/v1/webhooks/sms/aws/{topic}"


async def post(client: httpx.AsyncClient, path: str, env: dict[str, str]) -> httpx.Response:
    return await client.post(path, content=json.dumps(env).encode(), headers=headers(env))


def published(message_id: str) -> tuple[str, str] | None:
    """What moto's SNS recorded for an SMS it took: (phone number, text)."""
    from moto.sns.models import sns_backends

    for account in sns_backends.values():
        backend = account.get(REGION)
        if backend is not None and message_id in backend.sms_messages:
            return backend.sms_messages[message_id]
    return None


# -- inbound ----------------------------------------------------------------------------------


async def test_a_signed_inbound_sms_opens_a_routed_conversation(app, client, clean_db, aws):
    tenant, topic, path = await sms_channel(client)
    env = aws.sms(topic, CUSTOMER, OUR_NUMBER, "Hi, my order #1042 has not arrived")

    r = await post(client, path, env)

    assert r.status_code == 200, r.text
    msg = await only_message(clean_db)
    assert msg["body"] == "Hi, my order #1042 has not arrived"
    assert msg["provider_message_id"] == json.loads(env["Message"])["inboundMessageId"]
    assert msg["to_address"] == OUR_NUMBER and msg["channel"] == "sms"
    identity = await clean_db.fetchrow("SELECT * FROM customer_identities")
    assert (identity["kind"], identity["value"]) == ("phone", CUSTOMER)
    conv = await clean_db.fetchrow("SELECT * FROM conversations")
    assert conv["customer_id"] == identity["customer_id"] == msg["customer_id"]
    assert conv["state"] == "queued" and str(conv["queue_id"]) == tenant["queue"]["id"]
    meters = await clean_db.fetch("SELECT meter, tenant_id FROM usage_events")
    assert [(m["meter"], str(m["tenant_id"])) for m in meters] == [
        ("messages.sms", tenant["tenant"]["id"])
    ]


async def test_signature_version_2_verifies_with_sha256(app, client, clean_db, aws):
    _, topic, path = await sms_channel(client)
    env = aws.sms(topic, CUSTOMER, OUR_NUMBER, "v2 here", version="2")
    assert (await post(client, path, env)).status_code == 200
    # The same signature claimed as version 1 (SHA1) does not verify.
    other = aws.sms(topic, CUSTOMER, OUR_NUMBER, "v2 claimed as v1", version="2")
    r = await post(client, path, other | {"SignatureVersion": "1"})
    assert r.status_code == 403 and r.json()["code"] == "signature-invalid"
    assert (await only_message(clean_db))["body"] == "v2 here"


async def test_a_tampered_message_is_refused_and_nothing_is_written(app, client, clean_db, aws):
    _, topic, path = await sms_channel(client)
    before = await counts(clean_db)
    env = aws.sms(topic, CUSTOMER, OUR_NUMBER, "Refund me 10 dollars")
    tampered = env | {"Message": env["Message"].replace("10 dollars", "10000 dollars")}
    no_signature = {k: v for k, v in env.items() if k != "Signature"}
    garbage = env | {"Signature": "bm90IGEgc2lnbmF0dXJl"}

    for body in (tampered, garbage):
        r = await post(client, path, body)
        assert r.status_code == 403, r.text
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["code"] == "signature-invalid"
    assert (await post(client, path, no_signature)).status_code == 400
    assert await counts(clean_db) == before


async def test_a_certificate_off_the_allowed_host_is_refused_unfetched(app, client, clean_db, aws):
    _, topic, path = await sms_channel(client)
    fetches = aws.cert_fetches
    # The same server under another name, a non-.pem path, and https-only settings.
    elsewhere = aws.cert_url.replace("127.0.0.1", "localhost")
    not_pem = aws.url + "/?Action=ConfirmSubscription"
    for cert_url in (elsewhere, not_pem):
        env = aws.sms(topic, CUSTOMER, OUR_NUMBER, "hello", cert_url=cert_url)
        r = await post(client, path, env)
        assert r.status_code == 403, r.text
        assert r.json()["code"] == "signature-invalid"
    app.state.settings.aws_sns_allow_http_cert = False
    r = await post(client, path, aws.sms(topic, CUSTOMER, OUR_NUMBER, "hello"))
    assert r.status_code == 403 and r.json()["code"] == "signature-invalid"
    assert aws.cert_fetches == fetches
    assert await clean_db.fetchval("SELECT count(*) FROM messages") == 0


async def test_a_stale_or_future_timestamp_is_refused(app, client, clean_db, aws):
    _, topic, path = await sms_channel(client)
    window = timedelta(seconds=app.state.settings.webhook_max_age_seconds)
    now = datetime.now(UTC)
    for at in (now - window - timedelta(seconds=30), now + window + timedelta(seconds=30)):
        r = await post(client, path, aws.sms(topic, CUSTOMER, OUR_NUMBER, "old", at=at))
        assert r.status_code == 403, r.text
        assert r.json()["code"] == "stale-request"
    assert await clean_db.fetchval("SELECT count(*) FROM messages") == 0


async def test_another_topic_is_refused_even_signed(app, client, clean_db, aws):
    _, _, path = await sms_channel(client)
    r = await post(client, path, aws.sms("someone-elses-topic", CUSTOMER, OUR_NUMBER, "hi"))
    assert r.status_code == 403 and r.json()["code"] == "signature-invalid"
    # A topic no channel holds: the same 404 as any unknown account.
    env = aws.sms("no-such-topic", CUSTOMER, OUR_NUMBER, "hi")
    r = await post(client, "/v1/webhooks/sms/aws/no-such-topic", env)
    assert r.status_code == 404 and r.json()["code"] == "webhook-not-found"
    assert await clean_db.fetchval("SELECT count(*) FROM messages") == 0


async def test_a_replay_changes_nothing(app, client, clean_db, aws):
    _, topic, path = await sms_channel(client)
    env = aws.sms(topic, CUSTOMER, OUR_NUMBER, "once")
    assert (await post(client, path, env)).status_code == 200
    before = await counts(clean_db)

    again = await post(client, path, env)
    # SNS's own retry of the same SMS comes with a new envelope: the inbound id holds.
    inbound_id = json.loads(env["Message"])["inboundMessageId"]
    retry = await post(
        client, path, aws.sms(topic, CUSTOMER, OUR_NUMBER, "once", inbound_id=inbound_id)
    )

    for r in (again, retry):
        assert r.status_code == 200, r.text
        assert r.json()["duplicates"] == 1 and r.json()["received"] == 0
    assert await counts(clean_db) == before
    assert before["messages"] == 1 and before["usage_events"] == 1


async def test_a_subscription_confirmation_is_confirmed_on_the_allowed_host(
    app, client, clean_db, aws
):
    _, topic, path = await sms_channel(client)
    before = await counts(clean_db)
    env = aws.subscription(topic)

    r = await post(client, path, env)

    assert r.status_code == 200, r.text
    assert r.json() == {"subscription": "confirmed"}
    confirmed = [c for c in aws.confirmed if c["Token"] == env["Token"]]
    assert confirmed == [
        {"Action": "ConfirmSubscription", "TopicArn": env["TopicArn"], "Token": env["Token"]}
    ]
    assert await counts(clean_db) == before


async def test_a_subscribe_url_off_the_allowed_host_is_not_called(app, client, clean_db, aws):
    _, topic, path = await sms_channel(client)
    calls = len(aws.confirmed)
    off_host = aws.subscription(topic, subscribe_base=aws.url.replace("127.0.0.1", "localhost"))
    forged = aws.subscription(topic)
    forged = forged | {"Token": "0" * 128}  # the signature no longer covers it

    r = await post(client, path, off_host)
    assert r.status_code == 403 and r.json()["code"] == "signature-invalid"
    r = await post(client, path, forged)
    assert r.status_code == 403 and r.json()["code"] == "signature-invalid"
    assert len(aws.confirmed) == calls


# -- outbound ---------------------------------------------------------------------------------


async def conversation(app, client, clean_db, aws) -> tuple[dict[str, Any], Any]:
    tenant, topic, path = await sms_channel(client)
    r = await post(client, path, aws.sms(topic, CUSTOMER, OUR_NUMBER, "Where is my parcel?"))
    assert r.status_code == 200, r.text
    return tenant, await clean_db.fetchval("SELECT id FROM conversations")


async def test_a_reply_is_published_to_sns(app, client, clean_db, aws):
    tenant, conv_id = await conversation(app, client, clean_db, aws)

    sent = await reply(app, tenant, conv_id, "It ships today, sorry for the wait.")

    row = await message(clean_db, sent.id)
    assert row["status"] == "sent" and row["error"] is None
    assert published(row["provider_message_id"]) == (
        CUSTOMER,
        "It ships today, sorry for the wait.",
    )


async def test_a_refused_publish_fails_the_reply_with_snss_reason(app, client, clean_db, aws):
    tenant, conv_id = await conversation(app, client, clean_db, aws)

    sent = await reply(app, tenant, conv_id, "x" * 1700)  # past SNS's 1600-byte SMS limit

    row = await message(clean_db, sent.id)
    assert row["status"] == "failed"
    assert row["error"] == "SNS InvalidParameter: SMS message must be less than 1600 bytes"
    assert SECRET not in row["error"]
    status = await clean_db.fetchval(
        "SELECT payload->>'status' FROM conversation_events WHERE topic = 'message.status'"
    )
    assert status == "failed"


async def test_an_unreachable_sns_leaves_the_reply_queued_for_a_retry(app, client, clean_db, aws):
    tenant, conv_id = await conversation(app, client, clean_db, aws)
    app.state.settings.aws_sms_endpoint_url = "http://127.0.0.1:9"  # nothing listens

    sent = await reply(app, tenant, conv_id, "Still there?")

    row = await message(clean_db, sent.id)
    assert row["status"] == "queued" and row["attempts"] == 1
    assert row["error"] == "no answer (EndpointConnectionError)"


# -- pieces -----------------------------------------------------------------------------------


def test_the_registry_serves_sms_through_aws() -> None:
    adapter = adapter_for("sms", "aws")
    assert isinstance(adapter, AwsSmsAdapter)
    assert parse_sns_base(sns_base("eu-west-1", None)) == (None, "eu-west-1")
    assert parse_sns_base(sns_base("ap-south-1", "http://127.0.0.1:5000/")) == (
        "http://127.0.0.1:5000",
        "ap-south-1",
    )


def test_sns_errors_map_to_retryable_or_not_and_never_show_the_secret() -> None:
    def client_error(code: str, status: int, text: str) -> ClientError:
        return ClientError(
            {
                "Error": {"Code": code, "Message": text},
                "ResponseMetadata": {"HTTPStatusCode": status},
            },
            "Publish",
        )

    cases = [
        (client_error("Throttling", 400, "Rate exceeded"), True),
        (client_error("InternalError", 500, "Internal failure"), True),
        (client_error("OptedOut", 400, "Phone number is opted out"), False),
        (client_error("AuthorizationError", 403, f"not allowed with {SECRET}"), False),
        (client_error("InvalidParameter", 400, "Invalid parameter: PhoneNumber"), False),
    ]
    for exc, retryable in cases:
        error = publish_error(exc, SECRET)
        assert isinstance(error, ProviderError)
        assert error.retryable is retryable, exc
        assert SECRET not in error.detail and SECRET not in str(error)
    assert "***" in publish_error(cases[3][0], SECRET).detail


def test_the_policy_and_the_certificate_cache() -> None:
    policy = SnsPolicy.of(r"^sns\.[a-z0-9-]+\.amazonaws\.com(\.cn)?$", False)
    assert policy.allows("https://sns.eu-west-1.amazonaws.com/SimpleNotificationService-a.pem")
    assert policy.allows("https://sns.cn-north-1.amazonaws.com.cn/x.pem")
    for url in (
        "http://sns.eu-west-1.amazonaws.com/x.pem",  # not https
        "https://sns.eu-west-1.amazonaws.com.evil.example/x.pem",
        "https://evil.example/sns.us-east-1.amazonaws.com/x.pem",
        "https://user@sns.us-east-1.amazonaws.com/x.pem",
        "https://sns.us-east-1.amazonaws.com:bad/x.pem",
    ):
        assert not policy.allows(url), url
    cache = SigningCertificates(capacity=2)
    keys = [object(), object(), object()]
    for i, key in enumerate(keys):
        cache.put(f"u{i}", key)  # type: ignore[arg-type]
    assert len(cache) == 2 and cache.get("u0") is None and cache.get("u2") is keys[2]
    assert re.fullmatch(policy.host, "sns.us-east-1.amazonaws.com")
