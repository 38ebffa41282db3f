"""Property-based conformance of what only an agent does, as an agent.

tests/test_schema_fuzz.py calls every operation with a tenant's API key, so the agent's
own operations (scope ``agent:work``: presence, heartbeat, reservations) and the agent's
side of a conversation (reply, notes, typing, uploads, transfer, resolve, pending) only
ever answer it 403 or 404. Here a logged-in agent calls them, with the conversation and
the reservation path parameters fixed to the ones the agent holds, so that generated and
hostile bodies reach the handlers. Same configuration, dictionaries and checks: no 5xx,
every status and content type documented, bodies that match their schemas.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import schemathesis

from app.db import bootstrap
from tests import test_schema_fuzz
from tests.conversations.desk import customer_writes, take, webchat_channel
from tests.routing.conftest import running_router, staffed_tenant
from tests.test_schema_fuzz import _OPENAPI, _SHARED_FIXTURES, FUZZ_CONFIG

# Generated before any conversation exists (at collection): each test swaps these
# placeholders for its own agent's token, conversation and reservation just before
# the call.
TOKEN_PLACEHOLDER = "fuzz-agent-access-token"
CONVERSATION_PLACEHOLDER = "00000000-0000-4000-8000-00000000c0de"
RESERVATION_PLACEHOLDER = "00000000-0000-4000-8000-0000000000ee"
WRAP_UP_CODES = ["Resolved", "Refund issued"]

# The same fixture: the app served by uvicorn on 127.0.0.1, for the session.
live_api = test_schema_fuzz.live_api

_AGENT_WORK = [
    f"{method.upper()} {path}"
    for path, operations in _OPENAPI["paths"].items()
    for method, operation in operations.items()
    for requirement in operation.get("security", [])
    if "agent:work" in requirement.get("HTTPBearer", [])
]
_ON_CONVERSATION = [
    f"{method.upper()} {path}"
    for path, operations in _OPENAPI["paths"].items()
    for method in operations
    if path.startswith("/v1/conversations/{conversation_id}")
]
_ACCEPTED = FUZZ_CONFIG["checks"]["positive_data_acceptance"]["expected-statuses"]
_CONFIG = schemathesis.Config.from_dict(
    FUZZ_CONFIG
    | {
        "parameters": FUZZ_CONFIG["parameters"]
        | {
            "path.conversation_id": CONVERSATION_PLACEHOLDER,
            "path.reservation_id": RESERVATION_PLACEHOLDER,
        },
        "checks": {
            # As in the tenant's run, plus 412: a generated If-Match is never the
            # conversation's current ETag, and a stale one is refused by design.
            "positive_data_acceptance": {"expected-statuses": [*_ACCEPTED, 412]}
        },
    }
)
agent_work = schemathesis.openapi.from_dict(_OPENAPI, config=_CONFIG).include(name=_AGENT_WORK)
on_conversation = schemathesis.openapi.from_dict(_OPENAPI, config=_CONFIG).include(
    name=_ON_CONVERSATION
)


class AgentToken:
    """The agent's bearer token, through an auth provider: schemathesis still drops it
    for its "missing auth" cases and checks that those are refused."""

    def get(self, case: schemathesis.Case, ctx: schemathesis.AuthContext) -> str:
        return TOKEN_PLACEHOLDER

    def set(self, case: schemathesis.Case, data: str, ctx: schemathesis.AuthContext) -> None:
        case.headers["Authorization"] = f"Bearer {data}"


agent_work.auth(refresh_interval=None)(AgentToken)
on_conversation.auth(refresh_interval=None)(AgentToken)


@pytest.fixture
async def agent_desk(
    app: Any, client: httpx.AsyncClient, db_urls: bootstrap.DatabaseUrls
) -> dict[str, Any]:
    """A tenant whose customer wrote on web chat, and its agent who accepted the offer:
    the conversation is assigned to the agent, the reservation in progress."""
    t = await staffed_tenant(client, agents=1, queue={"wrap_up_codes": WRAP_UP_CODES})
    chat = await webchat_channel(client, t, t["queue"]["id"])
    got = await customer_writes(app, t, chat)
    agent = t["agents"][0]
    async with running_router(db_urls):
        offer = await take(client, agent)
    return {
        "token": agent["access_token"],
        "conversation_id": str(got.conversation_id),
        "reservation_id": offer["id"],
    }


def _as_agent(case: schemathesis.Case, desk: dict[str, Any]) -> None:
    if case.headers and case.headers.get("Authorization") == f"Bearer {TOKEN_PLACEHOLDER}":
        case.headers["Authorization"] = f"Bearer {desk['token']}"
    for name, placeholder in (
        ("conversation_id", CONVERSATION_PLACEHOLDER),
        ("reservation_id", RESERVATION_PLACEHOLDER),
    ):
        if (case.path_parameters or {}).get(name) == placeholder:
            case.path_parameters[name] = desk[name]


@agent_work.parametrize()
@_SHARED_FIXTURES
def test_agent_work(case: schemathesis.Case, live_api: str, agent_desk: dict[str, Any]) -> None:
    _as_agent(case, agent_desk)
    case.call_and_validate(base_url=live_api)


@on_conversation.parametrize()
@_SHARED_FIXTURES
def test_agent_on_conversation(
    case: schemathesis.Case, live_api: str, agent_desk: dict[str, Any]
) -> None:
    _as_agent(case, agent_desk)
    case.call_and_validate(base_url=live_api)


def test_the_agent_holds_the_conversation_and_the_reservation(
    live_api: str, agent_desk: dict[str, Any]
) -> None:
    """The premise of the fuzz runs: the fixed path parameters are the agent's own, so
    their bodies reach the handlers (a reply is sent) rather than a 403 or 404."""
    headers = {"Authorization": f"Bearer {agent_desk['token']}"}
    with httpx.Client(base_url=live_api, headers=headers) as http:
        conv = http.get(f"/v1/conversations/{agent_desk['conversation_id']}")
        assert conv.status_code == 200, conv.text
        assert conv.json()["state"] == "assigned"
        reservation = http.get(f"/v1/reservations/{agent_desk['reservation_id']}")
        assert reservation.status_code == 200, reservation.text
        assert reservation.json()["state"] == "in_progress"
        assert reservation.json()["agent_id"] == conv.json()["agent_id"]
        r = http.post(
            f"/v1/conversations/{agent_desk['conversation_id']}/messages", json={"text": "Hi"}
        )
        assert r.status_code == 201, r.text


@pytest.mark.parametrize("value", ["\x00", "lunch\x1b[2J", "coffee\nbreak"])
def test_break_reasons_and_wrap_up_codes_are_one_line(
    live_api: str, agent_desk: dict[str, Any], value: str
) -> None:
    """What an agent types as a break reason or a wrap-up code is refused with a 422
    naming the field when it holds control characters (a NUL was a 500: PostgreSQL text
    cannot hold it), as the queue's own wrap-up codes are."""
    headers = {"Authorization": f"Bearer {agent_desk['token']}"}
    with httpx.Client(base_url=live_api, headers=headers) as http:
        calls = [
            ("PUT", "/v1/agent/presence", {"status": "break", "break_reason": value}),
            (
                "POST",
                f"/v1/reservations/{agent_desk['reservation_id']}/wrap-up",
                {"code": value},
            ),
        ]
        for method, path, body in calls:
            r = http.request(method, path, json=body)
            assert r.status_code == 422, r.text
            assert r.headers["content-type"].startswith("application/problem+json")
            problem = r.json()
            field = "body." + next(iter(body.keys() - {"status"}))
            assert problem["field"] == field, problem
            assert "must not contain control characters" in problem["detail"], problem
        # Trimmed and kept otherwise.
        r = http.put("/v1/agent/presence", json={"status": "break", "break_reason": " lunch "})
        assert r.status_code == 200, r.text
        assert r.json()["break_reason"] == "lunch"
