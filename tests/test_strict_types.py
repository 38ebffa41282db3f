"""Request flags and counts take JSON's own types: 0, 1, "true" are not booleans and
true, "5", 5.0 are not integers. Each is refused with 422 naming the field, and
nothing is written."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import create_tenant

HOURS: dict[str, Any] = {
    "name": "Office",
    "timezone": "Europe/Paris",
    "weekly": {"mon": [["09:00", "17:00"]]},
}
QUEUE: dict[str, Any] = {"name": "Billing", "channels": ["chat"]}
SSO: dict[str, Any] = {
    "issuer": "https://login.acme.example",
    "client_id": "switchboard",
    "client_secret": "s3cret-value",
    "allowed_domains": ["acme.example"],
}
SKILL_ID = "019a2b7c-0000-7000-8000-0000000000c1"


def _holiday(closed: Any) -> dict[str, Any]:
    return HOURS | {"exceptions": [{"date": "2026-12-25", "closed": closed}]}


def _step(**fields: Any) -> dict[str, Any]:
    return QUEUE | {
        "required_skills": [{"skill_id": SKILL_ID, "min_proficiency": 3}],
        "relaxation_steps": [
            {"after_seconds": 30, "action": "lower_minimum", "skill_id": SKILL_ID, "to": 2} | fields
        ],
    }


CASES = [
    # (method, path, body, field at fault)
    ("PUT", "/v1/sso/oidc", SSO | {"enabled": 1}, "body.enabled"),
    ("PUT", "/v1/sso/oidc", SSO | {"enabled": "true"}, "body.enabled"),
    ("PUT", "/v1/sso/oidc", SSO | {"enabled": 0}, "body.enabled"),
    ("POST", "/v1/business-hours", _holiday(1), "body.exceptions.0.closed"),
    ("POST", "/v1/business-hours", _holiday("true"), "body.exceptions.0.closed"),
    ("POST", "/v1/queues", QUEUE | {"overflow_to_crowd": 1}, "body.overflow_to_crowd"),
    ("POST", "/v1/queues", QUEUE | {"overflow_to_crowd": "yes"}, "body.overflow_to_crowd"),
    ("POST", "/v1/queues", QUEUE | {"max_waiting": True}, "body.max_waiting"),
    ("POST", "/v1/queues", QUEUE | {"service_level_percent": "80"}, "body.service_level_percent"),
    ("POST", "/v1/queues", QUEUE | {"service_level_seconds": 20.0}, "body.service_level_seconds"),
    ("POST", "/v1/queues", QUEUE | {"max_wait_seconds": True}, "body.max_wait_seconds"),
    ("POST", "/v1/queues", QUEUE | {"sticky_timeout_seconds": True}, "body.sticky_timeout_seconds"),
    ("POST", "/v1/queues", QUEUE | {"wrap_up_seconds": False}, "body.wrap_up_seconds"),
    (
        "POST",
        "/v1/queues",
        QUEUE | {"required_skills": [{"skill_id": SKILL_ID, "min_proficiency": True}]},
        "body.required_skills.0.min_proficiency",
    ),
    ("POST", "/v1/queues", _step(after_seconds=True), "body.relaxation_steps.0.after_seconds"),
    ("POST", "/v1/queues", _step(to=True), "body.relaxation_steps.0.to"),
    (
        "POST",
        "/v1/queues",
        QUEUE
        | {
            "relaxation_steps": [
                {"after_seconds": 5, "action": "add_overflow", "target": {"crowd": 1}}
            ]
        },
        "body.relaxation_steps.0.target.crowd",
    ),
]


@pytest.mark.parametrize(("method", "path", "body", "field"), CASES)
async def test_lax_booleans_and_integers_are_refused(client, admin_conn, method, path, body, field):
    t = await create_tenant(client)
    r = await client.request(method, path, json=body, headers=t["headers"])
    assert r.status_code == 422, r.text
    assert r.headers["content-type"].startswith("application/problem+json")
    assert r.json()["code"] == "validation-failed"
    assert r.json()["field"] == field
    for table in ("sso_oidc_configs", "business_hours", "queues"):
        assert await admin_conn.fetchval(f"SELECT count(*) FROM {table}") == 0, table


async def test_updates_are_strict_too_and_json_values_still_work(client):
    t = await create_tenant(client)
    h = t["headers"]
    r = await client.post("/v1/queues", json=QUEUE | {"max_waiting": 10}, headers=h)
    assert r.status_code == 201, r.text
    url = f"/v1/queues/{r.json()['id']}"
    for body, field in (
        ({"overflow_to_crowd": 0}, "body.overflow_to_crowd"),
        ({"max_waiting": True}, "body.max_waiting"),
        ({"wrap_up_seconds": "30"}, "body.wrap_up_seconds"),
    ):
        r = await client.patch(url, json=body, headers=h)
        assert r.status_code == 422 and r.json()["field"] == field, r.text
    r = await client.get(url, headers=h)
    assert r.json()["version"] == 1 and r.json()["max_waiting"] == 10
    # Real JSON booleans and integers are what they always were.
    r = await client.patch(url, json={"overflow_to_crowd": True, "max_waiting": 25}, headers=h)
    assert r.status_code == 200, r.text
    assert r.json()["overflow_to_crowd"] is True and r.json()["max_waiting"] == 25
    r = await client.post("/v1/business-hours", json=_holiday(True), headers=h)
    assert r.status_code == 201, r.text
    assert r.json()["exceptions"][0]["closed"] is True
