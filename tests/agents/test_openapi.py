from __future__ import annotations

from app.config import Settings
from app.main import create_app

OPENAPI = create_app(
    Settings(environment="test"), app_database_url="postgresql://unused/x"
).openapi()

# The statuses beyond the common set each operation can answer, with the codes it
# documents an example of.
EXPECTED = {
    ("post", "/v1/agents"): {
        "201": set(),
        "403": {"insufficient-scope", "quota-exceeded"},
        "409": {"email-taken"},
        "422": {
            "unknown-skill",
            "duplicate-skill",
            "unknown-routing-profile",
            "unknown-supervisor",
            "invalid-supervisor",
        },
    },
    ("patch", "/v1/agents/{agent_id}"): {
        "200": set(),
        "403": {"quota-exceeded"},
        "409": {"agent-still-invited"},
        "412": {"precondition-failed"},
        "422": {"unknown-skill"},
    },
    ("delete", "/v1/agents/{agent_id}"): {"204": set(), "412": {"precondition-failed"}},
    ("post", "/v1/agents/{agent_id}/invitation"): {"201": set(), "409": {"agent-not-invited"}},
    ("post", "/v1/agents/invitations/accept"): {
        "200": set(),
        "422": {"invalid-invitation-token", "weak-password"},
    },
    ("post", "/v1/routing-profiles"): {
        "201": set(),
        "409": {"routing-profile-name-taken"},
        "422": {"cost-exceeds-capacity", "duplicate-queue", "unknown-queue"},
    },
    ("patch", "/v1/routing-profiles/{routing_profile_id}"): {
        "200": set(),
        "412": {"precondition-failed"},
        "422": {"cost-exceeds-capacity"},
    },
    ("delete", "/v1/routing-profiles/{routing_profile_id}"): {
        "204": set(),
        "409": {"routing-profile-in-use"},
        "412": {"precondition-failed"},
    },
}


def test_every_status_is_documented_with_examples():
    for (method, path), statuses in EXPECTED.items():
        responses = OPENAPI["paths"][path][method]["responses"]
        for status, codes in statuses.items():
            assert status in responses, (method, path, status)
            content = responses[status].get("content", {})
            if codes:
                examples = content["application/problem+json"]["examples"]
                documented = {e["value"]["code"] for e in examples.values()}
                assert codes <= documented, (method, path, status, codes - documented)
                assert all(e["value"]["status"] == int(status) for e in examples.values())
    schemas = OPENAPI["components"]["schemas"]
    for name in (
        "AgentCreate",
        "AgentUpdate",
        "AgentRead",
        "AcceptInvitation",
        "RoutingProfileCreate",
        "RoutingProfileUpdate",
        "RoutingProfileRead",
    ):
        assert schemas[name].get("examples"), name
    # Writes say they take If-Match and Idempotency-Key.
    for method, path in EXPECTED:
        names = {p["name"] for p in OPENAPI["paths"][path][method].get("parameters", [])}
        if method in ("patch", "delete"):
            assert "If-Match" in names, (method, path)
        if method == "post":
            assert "Idempotency-Key" in names, (method, path)
