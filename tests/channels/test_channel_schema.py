"""The channel tables match their models with row-level security forced, and the
OpenAPI document names every status each channel route answers, with examples."""

from __future__ import annotations

from tests.migration_check import check_migration

TABLES = ("channels", "channel_numbers", "channel_addresses")
REVISION, PARENT = "c3a000000008", "c3a000000007"


async def test_migration_matches_the_models_and_reverses(server_url, settings):
    await check_migration(
        server_url,
        settings,
        revision=REVISION,
        parent=PARENT,
        tables=TABLES,
        expected_security={
            "channels": (True, True),
            "channel_numbers": (True, True),
            # A platform table: ingress reads it before it knows the tenant.
            "channel_addresses": (False, False),
        },
    )


EXPECTED = {
    ("/v1/channels", "post"): {"201", "401", "403", "409", "422"},
    ("/v1/channels", "get"): {"200", "401", "403", "422"},
    ("/v1/channels/{channel_id}", "get"): {"200", "401", "403", "404", "422"},
    ("/v1/channels/{channel_id}", "patch"): {"200", "401", "403", "404", "409", "412", "422"},
    ("/v1/channels/{channel_id}", "delete"): {"204", "401", "403", "404", "409", "412", "422"},
    ("/v1/channels/{channel_id}/rotate-widget-key", "post"): {"200", "404", "409", "412"},
    ("/v1/channels/{channel_id}/rotate-webhook-secret", "post"): {"200", "404", "409", "412"},
}


def test_openapi_documents_every_status_with_examples():
    from app.config import Settings
    from app.main import create_app

    doc = create_app(Settings(environment="test"), app_database_url="postgresql://x/y").openapi()
    for (path, method), statuses in EXPECTED.items():
        op = doc["paths"][path][method]
        assert statuses <= set(op["responses"]), (path, method, set(op["responses"]))
        for status in statuses & {"404", "409", "412"}:
            content = op["responses"][status]["content"]["application/problem+json"]
            assert content["examples"], (path, method, status)
    create = doc["paths"]["/v1/channels"]["post"]
    body = create["requestBody"]["content"]["application/json"]
    assert set(body["examples"]) == {
        "voice",
        "webchat",
        "email",
        "sms",
        "whatsapp",
        "wechat",
        "messenger",
    }
    assert body["schema"]["discriminator"]["propertyName"] == "type"
    # Credentials are write-only in the schema, and no read model has a secret.
    schemas = doc["components"]["schemas"]
    creds = schemas["SmsChannelCreate"]["properties"]["credentials"]
    assert "writeOnly" in str(creds)
    for name, schema in schemas.items():
        if name.endswith("ChannelRead"):
            assert "webhook_secret" not in schema["properties"], name
            assert "credentials" not in schema["properties"], name
    assert "webhook_secret" in schemas["SmsChannelCreated"]["properties"]
