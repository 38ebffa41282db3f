"""The shared rules for text a person typed (app.core.schemas.check_text): what each kind
of field keeps and refuses, and that the API says which field and why."""

from __future__ import annotations

import json

import httpx
import pytest

from app.core.schemas import LINE_BREAKS, check_text, one_line, plain_text
from tests.routing.conftest import staffed_tenant
from tests.webchat.conftest import open_session, widget_tenant


def test_one_line_collapses_white_space_and_refuses_every_control_character() -> None:
    assert one_line("  Billing    team ") == "Billing team"
    for bad in ("a\nb", "a\x00b", "a\x7f", "a\x1b[2J"):
        with pytest.raises(ValueError, match=r"^must not contain control characters$"):
            one_line(bad)
    with pytest.raises(ValueError, match=r"^must not be blank$"):
        one_line("   ")


def test_message_text_keeps_line_breaks_and_its_white_space() -> None:
    text = "  Hello,\r\n\tyour order shipped.  "
    assert check_text(text, allowed_controls=LINE_BREAKS) == text
    for bad in ("nul \x00 here", "bell\x07", "del\x7f", "vt\x0b"):
        with pytest.raises(ValueError, match="control characters"):
            check_text(bad, allowed_controls=LINE_BREAKS)
    with pytest.raises(ValueError, match=r"^must not be blank$"):
        check_text(" \n\t ", allowed_controls=LINE_BREAKS)


def test_options_strip_allow_blank_and_name_the_reason() -> None:
    assert check_text("  Press 1\n", allowed_controls="\n\t", whitespace="strip") == "Press 1"
    with pytest.raises(ValueError, match=r"^must not contain control characters$"):
        check_text("a\r\nb", allowed_controls="\n\t")
    assert plain_text("") == "" and plain_text(" ref 7 ") == " ref 7 "
    with pytest.raises(ValueError, match=r"^other than line breaks$"):
        check_text("a\x00", control_reason="other than line breaks")


def test_a_lone_surrogate_is_not_text() -> None:
    for rule in (one_line, plain_text):
        with pytest.raises(ValueError, match=r"^must be valid Unicode \(no lone surrogates\)$"):
            rule("a\ud800")


async def test_a_lone_surrogate_in_a_contact_reference_is_422_and_writes_nothing(
    client: httpx.AsyncClient,
) -> None:
    # was: 500 (the reference passed validation and asyncpg could not encode it)
    t = await staffed_tenant(client, agents=1, queue={"channels": ["chat"]})
    h = t["headers"] | {"content-type": "application/json"}
    base = json.dumps({"channel": "chat", "queue_id": t["queue"]["id"]})[:-1]
    for extra, field in (
        ('"customer_ref": "cust-\\ud800"', "body.customer_ref"),
        ('"flow_inputs": ["1", "\\udfff"]', "body.flow_inputs.1"),
    ):
        r = await client.post("/v1/contacts", content=f"{base}, {extra}}}".encode(), headers=h)
        assert r.status_code == 422, r.text
        got = r.json()
        assert r.headers["content-type"] == "application/problem+json"
        assert got["field"] == field
        assert got["detail"] == f"{field}: must be valid Unicode (no lone surrogates)"
    r = await client.get("/v1/contacts", headers=t["headers"])
    assert r.status_code == 200 and r.json() == []


async def test_the_widget_names_the_field_and_the_rule_broken(client: httpx.AsyncClient) -> None:
    visitor = await open_session(client, await widget_tenant(client))
    for url, body, field, reason in (
        (
            "/v1/widget/conversations",
            {"text": "a\x00b"},
            "body.text",
            "must not contain control characters other than line breaks",
        ),
        ("/v1/widget/identify", {"name": "    "}, "body.name", "must not be blank"),
        (
            "/v1/widget/identify",
            {"name": "Ana\nB"},
            "body.name",
            "must not contain control characters",
        ),
    ):
        r = await client.post(url, json=body, headers=visitor["headers"])
        assert r.status_code == 422, r.text
        assert (r.json()["field"], r.json()["detail"]) == (field, f"{field}: {reason}")
    # Line breaks and tabs are part of a message.
    r = await client.post(
        "/v1/widget/conversations", json={"text": "Hello\r\n\tthere"}, headers=visitor["headers"]
    )
    assert r.status_code == 201, r.text
    assert r.json()["message"]["body"] == "Hello\r\n\tthere"
