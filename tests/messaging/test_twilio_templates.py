"""WhatsApp templates through Twilio, as an operator meets them: the channel declares the
approved templates with their Content SIDs; past WhatsApp's 24 hours an agent sends one
of them, and it goes out through Twilio's Content API (ContentSid + ContentVariables,
never Body). A template the channel does not declare, or with the wrong number of
parameters, is refused before anything is written."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
import pytest

from app.conversations.agent_schemas import MessageTemplate
from app.conversations.delivery import SendFailed, drain
from app.core.errors import Conflict, InvalidInput
from app.messaging.providers.base import Outgoing, OutgoingTemplate, ProviderError
from app.messaging.providers.twilio import TwilioAdapter
from app.messaging.senders import outgoing_template
from tests.messaging.fake_providers import FakeProviders
from tests.messaging.ingress import create_channel, messaging_tenant, post_twilio, reply
from tests.messaging.ingress import message as message_row
from tests.messaging.test_meta_windows import backdate, outbound_count
from tests.messaging.test_outbound_senders import twilio_conversation
from tests.messaging.test_webhooks_twilio import inbound, status

CUSTOMER = "whatsapp:+4915112345678"
OUR_NUMBER = "whatsapp:+14155238886"
ORDER_UPDATE = MessageTemplate(
    name="order_update", language="en_US", parameters=["4711", "tomorrow"]
)


def declared(content_sid: str, name: str = "order_update", **extra: Any) -> dict[str, Any]:
    return {"name": name, "language": "en_US", "content_sid": content_sid} | extra


async def twilio_whatsapp(
    app: Any,
    client: Any,
    clean_db: Any,
    wired: FakeProviders,
    *,
    hours_ago: float = 0,
    tenant: dict[str, Any] | None = None,
) -> tuple[dict[str, Any], uuid.UUID, str, str, dict[str, Any]]:
    """A WhatsApp channel through Twilio declaring order_update (2 variables) and
    hello_world (none), and a conversation the customer opened ``hours_ago``."""
    tenant = tenant or await messaging_tenant(client)
    sid, token = wired.twilio_account()
    order_sid = wired.twilio_content(sid, 2)
    hello_sid = wired.twilio_content(sid, 0)
    templates = [
        declared(order_sid, parameter_count=2),
        declared(hello_sid, name="hello_world"),
    ]
    channel = await create_channel(
        client, tenant, "whatsapp", "twilio", sid, {"auth_token": token}, templates=templates
    )
    params = inbound(sid, From=CUSTOMER, To=OUR_NUMBER, WaId="4915112345678")
    path = f"/v1/webhooks/whatsapp/twilio/{sid}"
    r = await post_twilio(client, app, path, params, token)
    assert r.status_code == 200, r.text
    await backdate(clean_db, hours_ago)
    conv_id = await clean_db.fetchval("SELECT id FROM conversations")
    return tenant, conv_id, order_sid, token, channel


def sends(wired: FakeProviders) -> list[Any]:
    return wired.made(r"/2010-04-01/Accounts/[^/]+/Messages\.json")


# -- an agent's template reply ------------------------------------------------------------------


async def test_a_template_goes_out_through_the_content_api_after_the_24_hours(
    app, client, clean_db, wired
):
    tenant, conv_id, order_sid, token, channel = await twilio_whatsapp(
        app, client, clean_db, wired, hours_ago=30
    )
    sid = channel["config"]["provider_account_id"]

    with pytest.raises(Conflict) as refused:
        await reply(app, tenant, conv_id, "Your order ships tomorrow")
    assert (refused.value.code, refused.value.field) == ("service-window-closed", "body.channel_id")
    assert await outbound_count(clean_db) == 0 and sends(wired) == []

    sent = await reply(app, tenant, conv_id, "", template=ORDER_UPDATE)

    [call] = sends(wired)
    path = f"/v1/webhooks/whatsapp/twilio/{sid}"
    assert call.form == {
        "To": [CUSTOMER],
        "From": [OUR_NUMBER],  # the number the customer wrote to
        "ContentSid": [order_sid],
        "ContentVariables": [json.dumps({"1": "4711", "2": "tomorrow"})],
        "StatusCallback": [app.state.settings.public_url.rstrip("/") + path],
    }
    assert wired.twilio_templates == [(order_sid, {"1": "4711", "2": "tomorrow"})]
    assert sent.body == "[template order_update (en_US): 4711, tomorrow]"
    row = await message_row(clean_db, sent.id)
    assert row["status"] == "sent" and row["provider_message_id"].startswith("SM")
    assert json.loads(row["template"]) == {
        "name": "order_update",
        "language": "en_US",
        "parameters": ["4711", "tomorrow"],
    }

    # Twilio's delivery receipt moves it on, as for any other Twilio message.
    receipt = status(sid, row["provider_message_id"], "delivered", To=CUSTOMER, From=OUR_NUMBER)
    assert (await post_twilio(client, app, path, receipt, token)).status_code == 200
    assert (await message_row(clean_db, sent.id))["status"] == "delivered"


async def test_a_template_without_variables_sends_no_content_variables(
    app, client, clean_db, wired
):
    tenant, conv_id, _, _, channel = await twilio_whatsapp(app, client, clean_db, wired)
    hello_sid = channel["config"]["templates"][1]["content_sid"]

    sent = await reply(
        app, tenant, conv_id, "", template=MessageTemplate(name="hello_world", language="en_US")
    )

    [call] = sends(wired)
    assert call.form["ContentSid"] == [hello_sid]
    assert "ContentVariables" not in call.form and "Body" not in call.form
    assert (await message_row(clean_db, sent.id))["status"] == "sent"


@pytest.mark.parametrize(
    ("template", "code", "field", "reason"),
    [
        (
            MessageTemplate(name="shipping_delay", language="en_US"),
            "template-not-declared",
            "body.template.name",
            "declares no template shipping_delay (en_US)",
        ),
        (
            MessageTemplate(name="order_update", language="de", parameters=["4711", "morgen"]),
            "template-not-declared",
            "body.template.language",
            "declares order_update in en_US only, not de",
        ),
        (
            MessageTemplate(name="order_update", language="en_US", parameters=["4711"]),
            "template-parameters-mismatch",
            "body.template.parameters",
            "order_update (en_US) takes 2 parameters, not 1",
        ),
        (
            MessageTemplate(name="hello_world", language="en_US", parameters=["Ada"]),
            "template-parameters-mismatch",
            "body.template.parameters",
            "hello_world (en_US) takes 0 parameters, not 1",
        ),
    ],
)
async def test_a_template_the_channel_cannot_send_is_refused_and_nothing_is_written(
    app, client, clean_db, wired, template, code, field, reason
):
    tenant, conv_id, _, _, _ = await twilio_whatsapp(app, client, clean_db, wired, hours_ago=30)
    events = await clean_db.fetchval("SELECT count(*) FROM conversation_events")

    with pytest.raises(InvalidInput) as refused:
        await reply(app, tenant, conv_id, "", template=template)

    assert (refused.value.code, refused.value.field) == (code, field)
    assert reason in refused.value.detail
    assert await outbound_count(clean_db) == 0
    assert await clean_db.fetchval("SELECT count(*) FROM conversation_events") == events
    assert sends(wired) == []


async def test_an_sms_channel_still_refuses_templates(app, client, clean_db, wired):
    tenant, conv_id, _ = await twilio_conversation(app, client, clean_db, wired)

    with pytest.raises(InvalidInput) as refused:
        await reply(app, tenant, conv_id, "", template=ORDER_UPDATE)

    assert (refused.value.code, refused.value.field) == ("template-not-supported", "body.template")
    assert await outbound_count(clean_db) == 0 and sends(wired) == []


# -- over REST --------------------------------------------------------------------------------


async def test_an_agent_sends_a_twilio_template_over_rest(app, client, clean_db, db_urls, wired):
    from tests.conversations.desk import take
    from tests.routing.conftest import running_router, staffed_tenant

    tenant = await staffed_tenant(client, agents=1, queue={"channels": ["sms", "messaging"]})
    tenant, conv_id, order_sid, _, _ = await twilio_whatsapp(
        app, client, clean_db, wired, tenant=tenant
    )
    agent = tenant["agents"][0]
    async with running_router(db_urls):
        await take(client, agent)
    await backdate(clean_db, 25)
    url = f"/v1/conversations/{conv_id}/messages"
    template = ORDER_UPDATE.model_dump()

    r = await client.post(url, json={"text": "Still there?"}, headers=agent["headers"])
    assert r.status_code == 409 and r.json()["code"] == "service-window-closed", r.text
    r = await client.post(
        url, json={"template": template | {"parameters": ["4711"]}}, headers=agent["headers"]
    )
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["field"] == "body.template.parameters"
    assert r.json()["code"] == "template-parameters-mismatch"
    r = await client.post(
        url, json={"template": template | {"name": "unknown"}}, headers=agent["headers"]
    )
    assert (r.status_code, r.json()["field"]) == (422, "body.template.name"), r.text
    assert await outbound_count(clean_db) == 0

    r = await client.post(url, json={"template": template}, headers=agent["headers"])
    assert r.status_code == 201, r.text
    assert r.json()["body"] == "[template order_update (en_US): 4711, tomorrow]"
    await drain()
    [call] = sends(wired)
    assert call.form["ContentSid"] == [order_sid] and "Body" not in call.form
    assert (await message_row(clean_db, r.json()["id"]))["status"] == "sent"


# -- the channel's declared templates ---------------------------------------------------------


def whatsapp_body(provider: str, templates: Any) -> dict[str, Any]:
    return {
        "type": "whatsapp",
        "name": f"wa {uuid.uuid4().hex[:6]}",
        "config": {
            "provider": provider,
            "provider_account_id": "AC" + uuid.uuid4().hex,
            "templates": templates,
        },
        "credentials": {"auth_token": "t"} if provider == "twilio" else {"access_token": "a"},
    }


SID = "HX" + "0123456789abcdef" * 2


@pytest.mark.parametrize(
    ("provider", "templates", "field"),
    [
        ("twilio", [declared("HX123")], "body.config.templates.0.content_sid"),
        (
            "twilio",
            [declared("HX" + "0123456789ABCDEF" * 2)],
            "body.config.templates.0.content_sid",
        ),
        ("twilio", [declared("MG" + "0" * 32)], "body.config.templates.0.content_sid"),
        (
            "twilio",
            [{"name": "order_update", "language": "en_US"}],
            "body.config.templates.0.content_sid",
        ),
        ("twilio", [declared(SID, name="Order Update")], "body.config.templates.0.name"),
        ("twilio", [declared(SID, language="english")], "body.config.templates.0.language"),
        ("twilio", [declared(SID, parameter_count=21)], "body.config.templates.0.parameter_count"),
        ("twilio", [declared(SID, parameter_count="2")], "body.config.templates.0.parameter_count"),
        ("twilio", [declared(SID, body="Hi")], "body.config.templates.0.body"),
        (
            "twilio",
            [declared(SID), declared("HX" + "f" * 32)],
            "body.config.templates.1.language",
        ),
        (
            "twilio",
            [declared(SID), declared(SID, name="hello_world")],
            "body.config.templates.1.content_sid",
        ),
        ("twilio", {"order_update": SID}, "body.config.templates"),
        ("meta", [declared(SID)], "body.config.templates"),
    ],
)
async def test_bad_template_declarations_are_refused(client, clean_db, provider, templates, field):
    tenant = await messaging_tenant(client)

    r = await client.post(
        "/v1/channels", json=whatsapp_body(provider, templates), headers=tenant["headers"]
    )

    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["field"] == field, r.text
    assert await clean_db.fetchval("SELECT count(*) FROM channels") == 0


async def test_an_sms_channel_declares_no_templates(client, clean_db):
    tenant = await messaging_tenant(client)
    body = {
        "type": "sms",
        "name": "Text us",
        "config": {
            "provider": "twilio",
            "provider_account_id": "AC" + uuid.uuid4().hex,
            "templates": [declared(SID)],
        },
        "credentials": {"auth_token": "t"},
    }
    r = await client.post("/v1/channels", json=body, headers=tenant["headers"])
    assert (r.status_code, r.json()["field"]) == (422, "body.config.templates"), r.text


async def test_templates_are_read_back_and_replaced_by_a_patch(app, client, clean_db, wired):
    tenant, conv_id, order_sid, _, channel = await twilio_whatsapp(
        app, client, clean_db, wired, hours_ago=30
    )
    sid = channel["config"]["provider_account_id"]
    url = f"/v1/channels/{channel['id']}"
    r = await client.get(url, headers=tenant["headers"])
    assert r.json()["config"]["templates"][0] == declared(order_sid, parameter_count=2)

    # The approved template changed at Twilio: a new Content SID with one variable.
    new_sid = wired.twilio_content(sid, 1)
    patch = {"config": {"templates": [declared(new_sid, parameter_count=1)]}}
    r = await client.patch(url, json=patch, headers=tenant["headers"] | {"If-Match": "*"})
    assert r.status_code == 200, r.text
    assert r.json()["config"]["templates"] == [declared(new_sid, parameter_count=1)]

    with pytest.raises(InvalidInput) as refused:
        await reply(app, tenant, conv_id, "", template=ORDER_UPDATE)
    assert refused.value.field == "body.template.parameters"
    await reply(
        app, tenant, conv_id, "", template=ORDER_UPDATE.model_copy(update={"parameters": ["4711"]})
    )
    assert wired.twilio_templates == [(new_sid, {"1": "4711"})]

    bad = {"config": {"templates": [declared("HX1")]}}
    r = await client.patch(url, json=bad, headers=tenant["headers"] | {"If-Match": "*"})
    assert (r.status_code, r.json()["field"]) == (422, "body.config.templates.0.content_sid")

    # null removes them: then no template goes out on this channel.
    r = await client.patch(
        url, json={"config": {"templates": None}}, headers=tenant["headers"] | {"If-Match": "*"}
    )
    assert r.status_code == 200 and r.json()["config"]["templates"] is None, r.text
    with pytest.raises(InvalidInput) as refused:
        await reply(app, tenant, conv_id, "", template=ORDER_UPDATE)
    assert refused.value.code == "template-not-declared"


async def test_a_meta_channel_takes_no_template_declarations_in_a_patch(client, clean_db, wired):
    from tests.messaging.test_webhooks_meta import whatsapp_channel

    tenant, _, _ = await whatsapp_channel(client, wired)
    [channel] = (await client.get("/v1/channels", headers=tenant["headers"])).json()["items"]
    r = await client.patch(
        f"/v1/channels/{channel['id']}",
        json={"config": {"templates": [declared(SID)]}},
        headers=tenant["headers"] | {"If-Match": "*"},
    )
    assert (r.status_code, r.json()["field"]) == (422, "body.config.templates"), r.text


# -- the sender and the adapter ---------------------------------------------------------------


def test_a_template_no_longer_declared_fails_when_sent_never_as_text():
    """The declaration was removed between the reply and its delivery."""
    stored = ORDER_UPDATE.model_dump()
    config = {"provider": "twilio", "templates": [declared(SID, parameter_count=2)]}

    assert outgoing_template(stored, "twilio", config).content_sid == SID
    with pytest.raises(SendFailed) as failed:
        outgoing_template(stored, "twilio", {"provider": "twilio"})
    assert not failed.value.retryable
    assert "declares no template order_update (en_US)" in str(failed.value)
    # Meta sends by name: no declaration needed.
    assert outgoing_template(stored, "meta", {"provider": "meta"}).content_sid is None


def outgoing(sid: str, token: str, url: str, template: OutgoingTemplate) -> Outgoing:
    return Outgoing(
        base_url=url,
        account_id=sid,
        credentials={"auth_token": token},
        to="4915112345678",
        text="[template order_update (en_US): 4711, tomorrow]",
        media_urls=[],
        status_callback=None,
        sender="+14155238886",
        template=template,
    )


async def test_the_adapter_sends_content_not_body_and_twilio_judges_the_sid(
    providers: FakeProviders, http: httpx.AsyncClient
):
    sid, token = providers.twilio_account()
    content_sid = providers.twilio_content(sid, 2)
    template = OutgoingTemplate("order_update", "en_US", ("4711", "Straße 5"), content_sid)

    result = await TwilioAdapter("whatsapp").send(
        http, outgoing(sid, token, providers.url, template)
    )

    assert result.provider_message_id.startswith("SM") and result.status == "sent"
    [call] = providers.requests
    assert "Body" not in call.form and "MediaUrl" not in call.form
    assert json.loads(call.form["ContentVariables"][0]) == {"1": "4711", "2": "Straße 5"}

    # A Content SID of another account, or none at all: Twilio's refusal, not retried.
    other, _ = providers.twilio_account()
    foreign = OutgoingTemplate(
        "order_update", "en_US", ("4711", "x"), providers.twilio_content(other, 2)
    )
    with pytest.raises(ProviderError) as refused:
        await TwilioAdapter("whatsapp").send(http, outgoing(sid, token, providers.url, foreign))
    assert not refused.value.retryable
    assert refused.value.detail == "HTTP 400, Twilio error 21655: The ContentSid is Invalid"
    with pytest.raises(ProviderError) as refused:
        await TwilioAdapter("whatsapp").send(
            http, outgoing(sid, token, providers.url, OutgoingTemplate("order_update", "en_US"))
        )
    assert "has no Content SID" in refused.value.detail
    with pytest.raises(ProviderError) as refused:
        await TwilioAdapter("sms").send(http, outgoing(sid, token, providers.url, template))
    assert refused.value.detail == "templates are for WhatsApp"
    assert len(providers.requests) == 2  # neither of the last two reached Twilio


@pytest.mark.parametrize(
    ("extra", "code"),
    [
        ({"ContentVariables": '{"1": "4711"}'}, 21654),  # variables without a ContentSid
        ({"ContentSid": "HX" + "0" * 32}, 21655),  # not one of the account's templates
        ({"ContentSid": "known", "ContentVariables": "{1: 4711}"}, 21656),  # not JSON
        ({"ContentSid": "known", "ContentVariables": '["4711", "x"]'}, 21656),
        ({"ContentSid": "known", "ContentVariables": '{"1": "4711"}'}, 21656),  # one short
        ({"ContentSid": "known", "ContentVariables": '{"1": "4711", "2": ""}'}, 21656),
        ({"ContentSid": "known", "ContentVariables": '{"1": "a", "2": "b"}', "Body": "Hi"}, 21619),
    ],
)
async def test_the_fake_twilio_holds_senders_to_the_content_apis_rules(
    providers: FakeProviders, http: httpx.AsyncClient, extra: dict[str, str], code: int
):
    """So that a sender that breaks them fails here as it would at Twilio."""
    sid, token = providers.twilio_account()
    if extra.get("ContentSid") == "known":
        extra = extra | {"ContentSid": providers.twilio_content(sid, 2)}
    form = {"To": CUSTOMER, "From": OUR_NUMBER} | extra
    r = await http.post(
        f"{providers.url}/2010-04-01/Accounts/{sid}/Messages.json", data=form, auth=(sid, token)
    )
    assert (r.status_code, r.json()["code"]) == (400, code), r.text
    assert providers.twilio_templates == []


# -- tenants as code --------------------------------------------------------------------------


async def test_a_blueprint_keeps_a_channels_templates(client, app):
    """Export shows the declared templates; a blueprint that changes them plans and
    applies the change, and then plans nothing."""
    from app.blueprints import service
    from tests.blueprints.test_blueprints import described, run
    from tests.conftest import login

    slug = f"wa-templates-{uuid.uuid4().hex[:6]}"
    admin = {"email": f"admin@{slug}.example", "password": "templates passphrase 2026"}
    tenant = {"slug": slug, "name": "Templates Inc", "plan": "growth", "admin": admin}
    await run(app, service.apply, {"version": 1, "tenant": tenant}, False)
    headers = (await login(client, admin["email"], admin["password"]))["headers"]
    body = whatsapp_body("twilio", [declared(SID, parameter_count=2)]) | {"name": "WhatsApp"}
    r = await client.post("/v1/channels", json=body, headers=headers)
    assert r.status_code == 201, r.text

    exported = await run(app, service.export, slug)
    [wa] = exported["channels"]
    assert wa["config"]["templates"] == [declared(SID, parameter_count=2)]
    wa["credentials"] = {"auth_token": "t"}  # write-only: a blueprint brings its own
    assert await run(app, service.plan, exported, False) == []

    wa["config"]["templates"] = [declared(SID, parameter_count=3)]
    plan = described(await run(app, service.plan, exported, False))
    assert plan == ["~ channels 'WhatsApp' (config)"]
    assert described(await run(app, service.apply, exported, False)) == plan
    assert await run(app, service.plan, exported, False) == []
    r = await client.get(f"/v1/channels/{r.json()['id']}", headers=headers)
    assert r.json()["config"]["templates"] == [declared(SID, parameter_count=3)]
