import uuid

from app.auth import secrets
from app.db.base import uuid7


def test_credentials_round_trip_whatever_characters_they_contain():
    # base64url uses '_' and '-': thousands of random ids must all parse back.
    for _ in range(3000):
        tenant, record = uuid.uuid4(), uuid7()
        cred, digest = secrets.issue("sbk", tenant, record)
        parsed = secrets.parse(cred, "sbk")
        assert parsed is not None, cred
        assert (parsed.tenant_id, parsed.record_id) == (tenant, record)
        assert secrets.secret_matches(parsed.secret, digest)


def test_malformed_or_foreign_credentials_do_not_parse():
    cred, _ = secrets.issue("sbk", uuid.uuid4(), uuid7())
    assert secrets.parse(cred, "sbr") is None
    assert secrets.parse(cred[:-1], "sbk") is None
    assert secrets.parse(cred + "A", "sbk") is None
    assert secrets.parse(cred[:47] + "." + cred[48:], "sbk") is None
    assert secrets.parse("sbk_" + "!" * 87, "sbk") is None
    assert secrets.parse("", "sbk") is None
