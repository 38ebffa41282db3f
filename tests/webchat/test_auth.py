"""Widget sessions: the widget key and the page's origin open a session; the visitor
token it returns is the visitor's only credential, bound to tenant, channel and visitor."""

from __future__ import annotations

import base64
import json
import re
import time
import uuid
from typing import Any

from app.webchat.tokens import VisitorClaims, visitor_tokens
from tests.webchat.conftest import ORIGIN, open_session, visitor_headers

PROBLEM = "application/problem+json"


def _problem(r: Any, status: int, code: str) -> dict[str, Any]:
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == PROBLEM
    body: dict[str, Any] = r.json()
    assert body["code"] == code, body
    return body


async def test_a_session_from_an_allowed_origin(client, widget):
    r = await client.post(
        "/v1/widget/sessions", headers={"X-Widget-Key": widget["widget_key"], "Origin": ORIGIN}
    )
    assert r.status_code == 201, r.text
    body = r.json()
    assert re.fullmatch(r"v_[A-Za-z0-9_-]{22}", body["visitor_id"])
    assert body["visitor_token"].startswith("vt1.")
    assert body["widget"] == {"greeting": "Hi! How can we help?", "theme": "#0055ff"}
    assert body["conversation"] is None and body["resumed"] is False
    # The browser may read the answer: CORS names the page's origin, without credentials.
    assert r.headers["access-control-allow-origin"] == ORIGIN
    assert "access-control-allow-credentials" not in r.headers
    assert "origin" in r.headers["vary"].lower()

    # One customer with one webchat identity: the visitor id.
    me = await client.post(
        "/v1/widget/identify", json={"name": "Jane"}, headers=visitor_headers(body["visitor_token"])
    )
    assert me.status_code == 200, me.text
    assert me.json()["display_name"] == "Jane"


async def test_a_returning_visitor_keeps_their_identity(app, client, widget, clean_db):
    first = await open_session(client, widget)
    again = await open_session(client, widget, visitor_token=first["visitor_token"])
    assert again["visitor_id"] == first["visitor_id"] and again["resumed"] is True
    assert again["visitor_token"] != "" and again["expires_at"] >= first["expires_at"]
    assert await clean_db.fetchval("SELECT count(*) FROM customers") == 1

    # An expired token still names the visitor (within the resume horizon)...
    tokens = visitor_tokens(app.state, app.state.settings)
    claims = _claims_of(app, first["visitor_token"])
    stale = tokens.issue(_with(claims, expires_at=int(time.time()) - 3600))
    back = await open_session(client, widget, visitor_token=stale)
    assert back["visitor_id"] == first["visitor_id"]
    # ...a forged or foreign one starts a new visitor, never an error.
    forged = await open_session(client, widget, visitor_token=first["visitor_token"][:-2] + "AA")
    assert forged["visitor_id"] != first["visitor_id"] and forged["resumed"] is False


async def test_wildcard_origins_cover_subdomains_only(client, widget):
    for origin in ("https://www.acme.example", "https://eu.shop.acme.example"):
        s = await open_session(client, widget, origin=origin)
        assert s["visitor_id"]
    for origin in (
        "https://acme.example",  # the wildcard's own name is not a subdomain
        "https://evilacme.example",
        "http://www.acme.example",  # another scheme
        "https://www.acme.example:8443",  # another port
        "https://shop.example.com.evil.example",
        "https://*.acme.example",  # a setting, not an origin
        "null",
    ):
        r = await client.post(
            "/v1/widget/sessions", headers={"X-Widget-Key": widget["widget_key"], "Origin": origin}
        )
        body = _problem(r, 403, "origin-not-allowed")
        assert body["field"] == "header.Origin"
        assert "access-control-allow-origin" not in r.headers, origin


async def test_no_origin_or_another_origin_is_refused(client, widget, clean_db):
    r = await client.post("/v1/widget/sessions", headers={"X-Widget-Key": widget["widget_key"]})
    _problem(r, 403, "origin-not-allowed")
    r = await client.post(
        "/v1/widget/sessions",
        headers={"X-Widget-Key": widget["widget_key"], "Origin": "https://elsewhere.example"},
    )
    _problem(r, 403, "origin-not-allowed")
    assert await clean_db.fetchval("SELECT count(*) FROM customers") == 0

    # A visitor's token used from another page is refused too.
    visitor = await open_session(client, widget)
    r = await client.get(
        "/v1/widget/conversations/" + str(uuid.uuid4()),
        headers=visitor_headers(visitor["visitor_token"], "https://elsewhere.example"),
    )
    _problem(r, 403, "origin-not-allowed")


async def test_unknown_key_and_disabled_channel_answer_alike(client, widget):
    r = await client.post(
        "/v1/widget/sessions",
        headers={"X-Widget-Key": "wk_nosuchkey000000000000", "Origin": ORIGIN},
    )
    unknown = _problem(r, 404, "widget-not-found")
    visitor = await open_session(client, widget)

    r = await client.patch(
        f"/v1/channels/{widget['channel']['id']}",
        json={"enabled": False},
        headers=widget["headers"],
    )
    assert r.status_code == 200, r.text
    r = await client.post(
        "/v1/widget/sessions", headers={"X-Widget-Key": widget["widget_key"], "Origin": ORIGIN}
    )
    disabled = _problem(r, 404, "widget-not-found")
    assert disabled["detail"] == unknown["detail"]
    # Sessions already open stop working as well.
    r = await client.post(
        "/v1/widget/conversations", json={"text": "hi"}, headers=visitor["headers"]
    )
    _problem(r, 404, "widget-not-found")

    r = await client.post("/v1/widget/sessions", headers={"Origin": ORIGIN})
    assert _problem(r, 401, "widget-key-required")["field"] == "header.X-Widget-Key"


async def test_a_tampered_or_expired_token_is_401(app, client, widget):
    visitor = await open_session(client, widget)
    token = visitor["visitor_token"]
    prefix, kid, payload, signature = token.split(".")
    claims = _claims_of(app, token)
    other = str(uuid.uuid4())
    # Another customer written into the payload, signature kept.
    raw = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    raw["cus"] = other
    forged_payload = base64.urlsafe_b64encode(json.dumps(raw).encode()).rstrip(b"=").decode()
    tokens = visitor_tokens(app.state, app.state.settings)
    for bad in (
        f"{prefix}.{kid}.{forged_payload}.{signature}",
        f"{prefix}.{kid}.{payload}.{signature[:-3]}abc",
        f"{prefix}.nokey.{payload}.{signature}",
        "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0.",  # a JWT with alg none
        tokens.issue(_with(claims, expires_at=int(time.time()) - 1)),
    ):
        r = await client.get("/v1/widget/conversations/" + other, headers=visitor_headers(bad))
        _problem(r, 401, "invalid-visitor-token")
    r = await client.get("/v1/widget/conversations/" + other, headers={"Origin": ORIGIN})
    _problem(r, 401, "visitor-token-required")
    # The genuine token works (404: no such conversation of this visitor).
    r = await client.get("/v1/widget/conversations/" + other, headers=visitor["headers"])
    _problem(r, 404, "conversation-not-found")


async def test_preflight_is_answered_for_the_widget_api(client, widget):
    r = await client.options(
        "/v1/widget/conversations",
        headers={
            "Origin": ORIGIN,
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type",
        },
    )
    assert r.status_code == 204
    assert r.headers["access-control-allow-origin"] == ORIGIN
    assert "POST" in r.headers["access-control-allow-methods"]
    assert "authorization" in r.headers["access-control-allow-headers"].lower()
    assert "access-control-allow-credentials" not in r.headers
    # Elsewhere in the API, no CORS at all.
    r = await client.options(
        "/v1/queues", headers={"Origin": ORIGIN, "Access-Control-Request-Method": "POST"}
    )
    assert "access-control-allow-origin" not in r.headers


def _claims_of(app: Any, token: str) -> VisitorClaims:
    claims = visitor_tokens(app.state, app.state.settings).verify(token)
    assert claims is not None
    return claims


def _with(claims: VisitorClaims, **change: Any) -> VisitorClaims:
    from dataclasses import replace

    return replace(claims, **change)
