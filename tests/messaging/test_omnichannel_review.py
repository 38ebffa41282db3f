"""Security review of webhook ingress (findings turned into tests).

- WeChat XML: a document type hidden from the DTD screen (a CDATA opener inside a
  comment, its closer inside a later comment) must still be refused: no entity
  declaration reaches the parser, so no entity is ever expanded.
- Inbound media: the provider-host allowlist must hold for every hop, not only the
  first: a redirect from an allowed host (an open redirect such as a link shim on a Meta
  domain) must not take the fetch into our network.
- Amazon SNS: SNS signs every topic's envelopes with the same certificate, so the
  signature proves only that *some* AWS account published. A topic of the same name in
  another AWS account must not post into a tenant's channel, nor get its subscription
  confirmed.
"""

from __future__ import annotations

import json
import secrets
import time
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler

import pytest

from app.messaging.media import fetch_media
from app.messaging.providers import MediaRef, WebhookRefused
from app.messaging.providers.wechat_xml import parse_xml
from tests.live_server import LocalHttpServer
from tests.messaging.fake_sns import REGION
from tests.messaging.ingress import counts
from tests.messaging.test_aws_sms import CUSTOMER, OUR_NUMBER, aws, moto_endpoint, post, sns
from tests.messaging.test_aws_sms import sms_channel as aws_sms_channel
from tests.messaging.test_webhooks_wechat import OPENID, ORIGINAL_ID, push, wechat_channel

__all__ = ["aws", "moto_endpoint", "sns"]  # fixtures, used by name

# Six levels of ten: one reference is 10**6 characters.
_ENTITIES = '<!ENTITY a "AAAAAAAAAA">' + "".join(
    f'<!ENTITY {name} "{("&" + prev + ";") * 10}">'
    for prev, name in zip("abcde", "bcdef", strict=True)
)


def hidden_doctype_push() -> bytes:
    """A WeChat text push whose DOCTYPE sits between a comment holding ``<![CDATA[`` and
    one holding ``]]>``: a CDATA-stripping screen sees only two comments."""
    return (
        f"<!-- <![CDATA[ --><!DOCTYPE xml [{_ENTITIES}]>"
        f"<xml><ToUserName><![CDATA[{ORIGINAL_ID}]]></ToUserName>"
        f"<FromUserName><![CDATA[{OPENID}]]></FromUserName>"
        f"<CreateTime>{int(time.time())}</CreateTime><MsgType><![CDATA[text]]></MsgType>"
        f"<Content>&f;</Content><MsgId>{secrets.randbelow(10**17)}</MsgId>"
        "<!-- ]]> --></xml>"
    ).encode()


def test_a_doctype_hidden_behind_comments_is_refused_by_the_parser() -> None:
    with pytest.raises(WebhookRefused) as refused:
        parse_xml(hidden_doctype_push())
    assert refused.value.code == "malformed"
    # Comments, CDATA holding markup and a DOCTYPE-like text stay fine.
    fields = parse_xml(
        b"<!-- a note --><xml><!-- <![CDATA[ --><Content><![CDATA[<!DOCTYPE x> &a;]]>"
        b"</Content><!-- ]]> --></xml>"
    )
    assert fields == {"Content": "<!DOCTYPE x> &a;"}


@pytest.mark.parametrize(
    "body",
    [
        b'<!DOCTYPE xml [<!ENTITY a "x">]><xml><Content>&a;</Content></xml>',
        b'<?xml version="1.0"?><!DOCTYPE xml SYSTEM "http://127.0.0.1/x.dtd"><xml/>',
        b"<xml><Content>&undeclared;</Content></xml>",
    ],
)
def test_declarations_and_entities_are_refused(body: bytes) -> None:
    with pytest.raises(WebhookRefused) as refused:
        parse_xml(body)
    assert refused.value.code == "malformed"


async def test_a_signed_push_with_a_hidden_doctype_writes_nothing(client, clean_db, wired):
    _, appid, token = await wechat_channel(client, wired)
    before = await counts(clean_db)

    r = await push(client, appid, token, hidden_doctype_push())

    assert r.status_code == 400, r.text[:300]
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == "malformed-webhook" and r.json()["field"] == "body"
    assert await counts(clean_db) == before


# -- Amazon SNS: a same-named topic of another AWS account ----------------------------------

FOREIGN_ACCOUNT = "210987654321"


def foreign_arn(topic: str) -> str:
    return f"arn:aws:sns:{REGION}:{FOREIGN_ACCOUNT}:{topic}"


async def test_a_same_named_topic_of_another_aws_account_cannot_post(app, client, clean_db, aws):
    _, topic, path = await aws_sms_channel(client)
    before = await counts(clean_db)
    # Genuinely SNS-signed, for the attacker's own topic that bears the tenant's name.
    env = aws.sms(topic, CUSTOMER, OUR_NUMBER, "Please reset my password, send it here")
    env = aws.sign(env | {"TopicArn": foreign_arn(topic)})

    r = await post(client, path, env)

    assert r.status_code == 403, r.text
    assert r.json()["code"] == "signature-invalid"
    assert "account" in r.json()["detail"]
    assert await counts(clean_db) == before


async def test_a_same_named_topic_of_another_aws_account_is_not_subscribed(
    app, client, clean_db, aws
):
    _, topic, path = await aws_sms_channel(client)
    calls = len(aws.confirmed)
    token = secrets.token_hex(64)
    arn = foreign_arn(topic)
    env = aws.envelope(
        "SubscriptionConfirmation",
        topic,
        f"You have chosen to subscribe to the topic {arn}.",
        Token=token,
        SubscribeURL=aws.subscribe_url(arn, token),
    )
    env = aws.sign(env | {"TopicArn": arn, "MessageId": str(uuid.uuid4())})

    r = await post(client, path, env)

    assert r.status_code == 403, r.text
    assert r.json()["code"] == "signature-invalid"
    assert len(aws.confirmed) == calls


async def test_the_channels_own_account_still_posts(app, client, clean_db, aws):
    _, topic, path = await aws_sms_channel(client)

    r = await post(client, path, aws.sms(topic, CUSTOMER, OUR_NUMBER, "hello"))

    assert r.status_code == 200, r.text
    assert json.loads(r.text)["received"] == 1


async def test_an_unanswering_sts_is_a_503_that_sns_retries(app, client, clean_db, aws):
    _, topic, path = await aws_sms_channel(client)
    before = await counts(clean_db)
    settings = app.state.settings
    saved = settings.aws_sms_endpoint_url
    settings.aws_sms_endpoint_url = "http://127.0.0.1:9"  # discard: nothing answers
    try:
        r = await post(client, path, aws.sms(topic, CUSTOMER, OUR_NUMBER, "hello"))
    finally:
        settings.aws_sms_endpoint_url = saved

    assert r.status_code == 503, r.text
    assert r.json()["code"] == "provider-unavailable"
    assert await counts(clean_db) == before


# -- inbound media: redirects off the provider's hosts --------------------------------------

INTERNAL = b"\x89PNG internal-only: instance credentials"


class _Internal(BaseHTTPRequestHandler):
    """Something inside our network that must never be fetched for a customer."""

    def log_message(self, format: str, *args: object) -> None:
        pass

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "image/png")
        self.send_header("Content-Length", str(len(INTERNAL)))
        self.end_headers()
        self.wfile.write(INTERNAL)


def _redirecting_to(target: str) -> type[BaseHTTPRequestHandler]:
    class Redirect(BaseHTTPRequestHandler):
        """An allowed provider host with an open redirect (a link shim)."""

        def log_message(self, format: str, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            self.send_response(302)
            self.send_header("Location", target + "/latest/meta-data/")
            self.send_header("Content-Length", "0")
            self.end_headers()

    return Redirect


@pytest.fixture
def internal_and_shim() -> Iterator[tuple[str, str]]:
    internal = LocalHttpServer(_Internal)
    shim = LocalHttpServer(_redirecting_to(internal.url))
    try:
        yield shim.url, internal.url
    finally:
        shim.stop()
        internal.stop()


async def test_a_redirect_off_metas_hosts_is_not_followed(app, internal_and_shim, http):
    shim, _ = internal_and_shim
    # The shim's origin stands for an allowed Meta host.
    settings = app.state.settings.model_copy(update={"meta_graph_base": shim})

    got = await fetch_media(
        http,
        settings,
        channel_type="messenger",
        provider="meta",
        account_id="1234567890",
        credentials={"page_access_token": "t", "app_secret": "s"},
        media=[MediaRef(url=f"{shim}/l.php?u=internal", content_type="image/png")],
    )

    assert got.attachments == []
    assert got.notes == ["the file was redirected off the provider's hosts"]


async def test_a_redirect_within_the_allowed_hosts_is_followed(app, internal_and_shim, http):
    _, internal = internal_and_shim
    # Here the target itself is the allowed origin: a redirect within it is fine.
    settings = app.state.settings.model_copy(update={"meta_graph_base": internal})

    got = await fetch_media(
        http,
        settings,
        channel_type="messenger",
        provider="meta",
        account_id="1234567890",
        credentials={"page_access_token": "t", "app_secret": "s"},
        media=[MediaRef(url=f"{internal}/cdn/a.png", content_type="image/png")],
    )

    assert [a.data for a in got.attachments] == [INTERNAL] and got.notes == []
