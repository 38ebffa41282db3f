from tests.conftest import create_tenant, login


async def test_signup_token_me_roundtrip(client):
    t = await create_tenant(client)
    tokens = await login(client, t["email"])
    r = await client.get("/v1/me", headers=tokens["headers"])
    assert r.status_code == 200, r.text
    me = r.json()
    assert me["tenant"]["id"] == t["tenant"]["id"]
    assert me["role"] == "owner"
    assert me["user"]["email"] == t["email"]
