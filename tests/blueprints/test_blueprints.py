"""Tenants as code: plan, apply, export, round trips, pruning and refusals."""

from __future__ import annotations

import copy
import json
from typing import Any

import jsonschema
import pytest
import yaml

from app.blueprints import service
from app.blueprints.jsonschema import blueprint_schema
from app.core.errors import SwitchboardError
from tests.conftest import ROOT, login

DEMO = ROOT / "tenants" / "demo.yaml"


def demo(slug: str = "northwind-test") -> dict[str, Any]:
    data = yaml.safe_load(DEMO.read_text())
    data["tenant"]["slug"] = slug
    data["tenant"]["admin"]["email"] = f"admin@{slug}.example"
    for a in data["agents"]:
        a["email"] = a["email"].replace("northwind-outfitters", slug)
    # Phone numbers are platform-unique: give each test tenant its own.
    data["phone_numbers"][0]["number"] = data["channels"][0]["config"]["phone_numbers"][0] = (
        "+1415555" + str(100 + sum(map(ord, slug)) % 100).zfill(4)
    )
    # Inbound email addresses are platform-unique too.
    data["channels"][2]["config"]["local_part"] = f"{slug}-support"
    return data


async def run(app: Any, fn: Any, *args: Any) -> Any:
    async with app.state.session_factory() as session, session.begin():
        return await fn(session, *args)


def described(changes: list[Any]) -> list[str]:
    return [c.describe() for c in changes]


async def test_apply_is_idempotent_and_export_round_trips(client, app):
    data = demo()
    planned = await run(app, service.plan, data, False)
    applied = await run(app, service.apply, data, False)
    assert [c.action for c in planned] == ["create"] * len(planned)
    assert described(applied) == described(planned)
    assert await run(app, service.plan, data, False) == []
    assert await run(app, service.apply, data, False) == []

    exported = await run(app, service.export, "northwind-test")
    jsonschema.Draft202012Validator(blueprint_schema()).validate(exported)
    assert {s["name"] for s in exported["skills"]} >= {"English", "Spanish", "Returns"}
    assert len(exported["agents"]) == 8
    # Export applies back with no changes (also through YAML text).
    again = yaml.safe_load(service.dump_yaml(exported))
    assert await run(app, service.plan, again, True) == []
    assert await run(app, service.apply, again, True) == []


async def test_the_applied_tenant_works_through_the_api(client, app):
    data = demo("northwind-api")
    await run(app, service.apply, data, False)
    admin = await login(
        client, data["tenant"]["admin"]["email"], data["tenant"]["admin"]["password"]
    )
    h = admin["headers"]
    queues = {q["name"]: q for q in (await client.get("/v1/queues", headers=h)).json()["items"]}
    assert set(queues) == {"Sales", "Support", "Soporte en español"}
    assert queues["Sales"]["overflow_queue_id"] == queues["Support"]["id"]
    flows = (await client.get("/v1/flows", headers=h)).json()["items"]
    assert flows[0]["name"] == "Main IVR" and flows[0]["published_version"] == 1
    numbers = (await client.get("/v1/phone-numbers", headers=h)).json()["items"]
    assert numbers[0]["flow_id"] == flows[0]["id"]
    agent = next(a for a in data["agents"] if a.get("password"))
    agent_tokens = await login(client, agent["email"], agent["password"])
    me = (await client.get("/v1/me", headers=agent_tokens["headers"])).json()
    assert me["role"] == "agent" and me["tenant"]["name"] == "Northwind Outfitters"
    # Agents without a password were invited by mail.
    outbox = (await client.get("/v1/dev/outbox", headers=h)).json()["items"]
    assert len([m for m in outbox if m["kind"] == "agent-invitation"]) == 7
    # Every change is audited.
    events = (await client.get("/v1/audit-events", params={"limit": 200}, headers=h)).json()
    assert events["items"]


async def test_plan_lists_updates_and_apply_makes_them(client, app):
    data = demo("northwind-upd")
    await run(app, service.apply, data, False)
    changed = copy.deepcopy(data)
    changed["queues"][0]["service_level_seconds"] = 15
    changed["agents"][1]["skills"].append({"skill": "Spanish", "proficiency": 2})
    changed["skills"].append({"name": "Gift cards"})
    plan = described(await run(app, service.plan, changed, False))
    assert plan == [
        "+ skills 'Gift cards'",
        "~ queues 'Sales' (service_level_seconds)",
        f"~ agents '{data['agents'][1]['email']}' (skills)",
    ]
    assert described(await run(app, service.apply, changed, False)) == plan
    assert await run(app, service.plan, changed, False) == []


async def test_deletions_only_with_prune(client, app):
    data = demo("northwind-prune")
    data["skills"].append({"name": "Unused"})
    await run(app, service.apply, data, False)
    data["skills"] = [s for s in data["skills"] if s["name"] != "Unused"]
    assert await run(app, service.plan, data, False) == []
    assert described(await run(app, service.plan, data, True)) == ["- skills 'Unused'"]
    assert described(await run(app, service.apply, data, True)) == ["- skills 'Unused'"]
    assert await run(app, service.plan, data, True) == []
    # Pruning something still in use is refused and changes nothing.
    data["skills"] = [s for s in data["skills"] if s["name"] != "Returns"]
    with pytest.raises(SwitchboardError) as e:
        await run(app, service.apply, data, True)
    assert e.value.code == "skill-in-use"
    exported = await run(app, service.export, "northwind-prune")
    assert "Returns" in {s["name"] for s in exported["skills"]}


@pytest.mark.parametrize(
    ("mutate", "field", "code"),
    [
        (
            lambda d: d["queues"][2]["required_skills"][0].update(skill="Klingon"),
            "queues.2.required_skills.0.skill",
            "blueprint-unknown-reference",
        ),
        (
            lambda d: d["queues"][1].update(service_level_percent=150),
            "queues.1.service_level_percent",
            "validation-failed",
        ),
        (lambda d: d["skills"].append({"name": "english"}), "skills.5.name", "blueprint-duplicate"),
        (
            lambda d: d["agents"][0].update(routing_profile="Nope"),
            "agents.0.routing_profile",
            "blueprint-unknown-reference",
        ),
        (
            lambda d: d["flows"][0]["graph"]["nodes"]["sales"].update(queue="Nope"),
            "flows.0.graph.nodes.sales.queue",
            "blueprint-unknown-reference",
        ),
        (
            lambda d: d["phone_numbers"][0].update(number="555-0100"),
            "phone_numbers.0.number",
            "validation-failed",
        ),
        (
            lambda d: d["channels"][1]["config"].update(allowed_origins=["ftp://x"]),
            "channels.1.config.allowed_origins.0",
            "validation-failed",
        ),
        (lambda d: d.update(widgets=[]), "widgets", "validation-failed"),
        (lambda d: d["agents"][0].update(password="short"), "agents.0.password", "weak-password"),
    ],
)
async def test_bad_blueprints_are_refused_and_change_nothing(
    client, app, admin_conn, mutate, field, code
):
    data = demo("northwind-bad")
    mutate(data)
    with pytest.raises(SwitchboardError) as e:
        service.validate_top(data)
        await run(app, service.apply, data, False)
    assert e.value.field == field, e.value.detail
    assert e.value.code == code
    assert await admin_conn.fetchval("SELECT count(*) FROM tenants") == 0
    assert await admin_conn.fetchval("SELECT count(*) FROM skills") == 0


async def test_two_tenants_from_one_blueprint_stay_apart(client, app):
    a, b = demo("tenant-a"), demo("tenant-b")
    await run(app, service.apply, a, False)
    await run(app, service.apply, b, False)
    ha = await login(client, a["tenant"]["admin"]["email"], a["tenant"]["admin"]["password"])
    hb = await login(client, b["tenant"]["admin"]["email"], b["tenant"]["admin"]["password"])
    qa = (await client.get("/v1/queues", headers=ha["headers"])).json()["items"]
    qb = (await client.get("/v1/queues", headers=hb["headers"])).json()["items"]
    assert {q["name"] for q in qa} == {q["name"] for q in qb}
    assert not {q["id"] for q in qa} & {q["id"] for q in qb}
    r = await client.get(f"/v1/queues/{qa[0]['id']}", headers=hb["headers"])
    assert r.status_code == 404


def test_committed_schema_is_current_and_demo_conforms():
    committed = json.loads((ROOT / "tenants" / "schema.json").read_text())
    assert committed == json.loads(json.dumps(blueprint_schema())), (
        "tenants/schema.json is stale: `switchboard tenants schema > tenants/schema.json`"
    )
    jsonschema.Draft202012Validator(committed).validate(yaml.safe_load(DEMO.read_text()))
    bad = yaml.safe_load(DEMO.read_text()) | {"widgets": []}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.Draft202012Validator(committed).validate(bad)


def test_demo_is_a_realistic_retailer():
    d = yaml.safe_load(DEMO.read_text())
    assert {"Sales", "Support"} <= {q["name"] for q in d["queues"]}
    assert len([s for s in d["skills"] if s.get("kind") == "language"]) >= 2
    assert len(d["skills"]) >= 3 and len(d["agents"]) == 8
    assert {c["type"] for c in d["channels"]} >= {"webchat", "email", "voice"}
    assert any(n["type"] == "menu" for n in d["flows"][0]["graph"]["nodes"].values())
