"""The Twilio and AWS (Amazon Connect) adapters against local servers that speak those
providers' wire formats, alone and behind the API."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest

from app.config import Settings
from app.phone_numbers.carriers import (
    CarrierFailure,
    Carriers,
    NumberQuery,
    NumberUnavailable,
    Price,
    SandboxCarrier,
)
from app.phone_numbers.carriers.twilio import TwilioCarrier
from tests.conftest import create_tenant
from tests.phone_numbers.conftest import connect_carrier, twilio_carrier
from tests.phone_numbers.fake_connect import FakeConnect
from tests.phone_numbers.fake_twilio import FakeTwilio

URL = "/v1/phone-numbers"


async def nothing_written(admin_conn: Any) -> bool:
    return (
        await admin_conn.fetchval("SELECT count(*) FROM phone_numbers") == 0
        and await admin_conn.fetchval("SELECT count(*) FROM number_claims") == 0
        and await admin_conn.fetchval("SELECT count(*) FROM usage_events") == 0
    )


# --- Twilio --------------------------------------------------------------------------


async def test_twilio_search_speaks_available_phone_numbers(twilio: FakeTwilio) -> None:
    carrier = twilio_carrier(twilio)
    found = await carrier.search(NumberQuery("US", "local", "415", "011", 5))
    assert [n.e164 for n in found] == [
        "+14155550110",
        "+14155550111",
        "+14155550112",
        "+14155550113",
        "+14155550114",
    ]
    assert found[0].locality == "San Francisco" and found[0].voice and found[0].sms
    assert found[0].monthly_price == Price(115, "USD")  # "1.15" USD from the Pricing API
    method, path, params = twilio.requests[0]
    assert (method, params) == ("GET", {"AreaCode": "415", "Contains": "011", "PageSize": "5"})
    assert path == f"/2010-04-01/Accounts/{twilio.account_sid}/AvailablePhoneNumbers/US/Local.json"
    assert twilio.requests[1][1] == "/v1/PhoneNumbers/Countries/US"

    # Twilio's AreaCode works in the US and Canada only: elsewhere we filter ourselves.
    leeds = await carrier.search(NumberQuery("GB", "local", "113", limit=3))
    assert [n.e164 for n in leeds] == ["+441134960000", "+441134960001", "+441134960002"]
    assert "AreaCode" not in twilio.requests[2][2]
    assert leeds[0].monthly_price == Price(100, "GBP")  # 0.995 rounds to 100 pence
    assert not leeds[0].sms
    # No inventory in that country (Twilio answers 404), or no price for that type.
    assert await carrier.search(NumberQuery("FR")) == []
    assert await carrier.search(NumberQuery("GB", "mobile")) == []
    tf = TwilioCarrier(
        twilio.account_sid,
        twilio.auth_token,
        api_base_url=twilio.url,
        pricing_base_url=twilio.url + "/nowhere",
    )
    assert (await tf.search(NumberQuery("US", limit=1)))[0].monthly_price is None


async def test_twilio_claim_and_release_speak_incoming_phone_numbers(twilio: FakeTwilio) -> None:
    carrier = twilio_carrier(twilio)
    sid = await carrier.claim("+14155550100")
    assert sid.startswith("PN") and twilio.owned == {sid: "+14155550100"}
    assert twilio.requests[-1] == (
        "POST",
        f"/2010-04-01/Accounts/{twilio.account_sid}/IncomingPhoneNumbers.json",
        {"PhoneNumber": "+14155550100"},
    )
    assert "+14155550100" not in [n.e164 for n in await carrier.search(NumberQuery("US"))]
    with pytest.raises(NumberUnavailable):  # Twilio error 21422
        await carrier.claim("+14155550100")
    await carrier.release(sid)
    assert twilio.owned == {}
    await carrier.release(sid)  # already gone (404): not an error


async def test_twilio_failures_are_carrier_failures(twilio: FakeTwilio) -> None:
    wrong = twilio_carrier(twilio, auth_token="not-the-token")
    with pytest.raises(CarrierFailure, match="authentication failed"):
        await wrong.search(NumberQuery("US"))
    with pytest.raises(CarrierFailure, match="authentication failed"):
        await wrong.claim("+14155550100")
    twilio.fail_status = 503
    with pytest.raises(CarrierFailure, match="503"):
        await twilio_carrier(twilio).claim("+14155550100")
    closed = TwilioCarrier("AC0", "t", api_base_url="http://127.0.0.1:9", timeout=2)
    with pytest.raises(CarrierFailure, match="unreachable"):
        await closed.release("PN0")


async def test_api_with_twilio(
    client: httpx.AsyncClient,
    admin_conn: Any,
    twilio: FakeTwilio,
    use_carriers: Callable[..., None],
) -> None:
    use_carriers(twilio_carrier(twilio))
    t = await create_tenant(client)
    h = t["headers"]
    r = await client.get(
        f"{URL}/available", params={"country": "US", "area_code": "212"}, headers=h
    )
    assert r.status_code == 200, r.text
    assert r.json()["carrier"] == "twilio"
    first = r.json()["items"][0]
    assert first["number"] == "+12125550100"
    assert first["monthly_price"] == {"amount_minor": 115, "currency": "USD"}

    r = await client.post(URL, json={"number": "+12125550100"}, headers=h)
    assert r.status_code == 201, r.text
    assert r.json()["carrier"] == "twilio"
    nid = r.json()["id"]
    (sid,) = twilio.owned
    assert await admin_conn.fetchval("SELECT carrier_ref FROM phone_numbers") == sid

    # A number Twilio will not sell: 409, nothing kept.
    r = await client.post(URL, json={"number": "+13125550100"}, headers=h)
    assert r.status_code == 409 and r.json()["code"] == "number-unavailable"
    assert await admin_conn.fetchval("SELECT count(*) FROM phone_numbers") == 1

    # Nor in the platform register: the refusal rolled the claim back whole.
    assert (
        await admin_conn.fetchval("SELECT count(*) FROM number_claims WHERE e164 = '+13125550100'")
        == 0
    )

    r = await client.delete(f"{URL}/{nid}", headers=h)
    assert r.status_code == 204
    assert twilio.owned == {}


async def test_api_answers_502_and_writes_nothing_when_twilio_refuses_us(
    client: httpx.AsyncClient,
    admin_conn: Any,
    twilio: FakeTwilio,
    use_carriers: Callable[..., None],
) -> None:
    use_carriers(twilio_carrier(twilio, auth_token="revoked"))
    t = await create_tenant(client)
    for request in (
        client.get(f"{URL}/available", params={"country": "US"}, headers=t["headers"]),
        client.post(
            URL, json={"number": "+14155550100"}, headers=t["headers"] | {"Idempotency-Key": "k1"}
        ),
    ):
        r = await request
        assert r.status_code == 502, r.text
        assert r.headers["content-type"] == "application/problem+json"
        assert r.json()["code"] == "carrier-error" and "authentication" in r.json()["detail"]
        assert twilio.auth_token not in r.text
    assert await nothing_written(admin_conn)
    assert twilio.owned == {}
    # The failed attempt did not use up the Idempotency-Key: a retry runs afresh.
    use_carriers(twilio_carrier(twilio))
    r = await client.post(
        URL, json={"number": "+14155550100"}, headers=t["headers"] | {"Idempotency-Key": "k1"}
    )
    assert r.status_code == 201


async def test_release_failure_at_the_carrier_keeps_the_number(
    client: httpx.AsyncClient,
    admin_conn: Any,
    twilio: FakeTwilio,
    use_carriers: Callable[..., None],
) -> None:
    use_carriers(twilio_carrier(twilio))
    t = await create_tenant(client)
    nid = (await client.post(URL, json={"number": "+14155550105"}, headers=t["headers"])).json()[
        "id"
    ]
    twilio.fail_status = 500
    r = await client.delete(f"{URL}/{nid}", headers=t["headers"])
    assert r.status_code == 502 and r.json()["code"] == "carrier-error"
    assert (await client.get(f"{URL}/{nid}", headers=t["headers"])).json()["status"] == "active"
    row = await admin_conn.fetchrow("SELECT tenant_id, available_after FROM number_claims")
    assert row["tenant_id"] is not None and row["available_after"] is None
    twilio.fail_status = None
    assert (await client.delete(f"{URL}/{nid}", headers=t["headers"])).status_code == 204


async def test_numbers_are_released_at_the_carrier_that_holds_them(
    client: httpx.AsyncClient, twilio: FakeTwilio, use_carriers: Callable[..., None]
) -> None:
    # Claimed at Twilio; the platform then moves to the sandbox for new numbers.
    use_carriers(twilio_carrier(twilio))
    t = await create_tenant(client)
    nid = (await client.post(URL, json={"number": "+14155550106"}, headers=t["headers"])).json()[
        "id"
    ]
    use_carriers(SandboxCarrier(), twilio_carrier(twilio))
    assert (await client.delete(f"{URL}/{nid}", headers=t["headers"])).status_code == 204
    assert twilio.owned == {}


def test_unconfigured_carriers_fail_as_carrier_failures() -> None:
    for name in ("twilio", "aws"):
        with pytest.raises(CarrierFailure, match="not configured"):
            _ = Carriers.from_settings(Settings(carrier=name)).default  # type: ignore[arg-type]
    assert Carriers.from_settings(Settings()).default.name == "sandbox"


# --- AWS: Amazon Connect -------------------------------------------------------------


async def test_connect_search_pages_and_filters(connect: FakeConnect) -> None:
    carrier = connect_carrier(connect)
    found = await carrier.search(NumberQuery("US", "local", "415", limit=15))
    assert [n.e164 for n in found] == [f"+141555501{n:02d}" for n in range(15)]
    assert found[0].voice and not found[0].sms and found[0].monthly_price is None
    assert found[0].locality == "San Francisco, CA"
    searches = [b for m, p, b in connect.requests if p == "/phone-number/search-available"]
    assert len(searches) == 2 and searches[1]["NextToken"] == "10"
    assert searches[0] | {} == {
        "TargetArn": connect.instance_arn,
        "PhoneNumberCountryCode": "US",
        "PhoneNumberType": "DID",
        "PhoneNumberPrefix": "+1415",
        "MaxResults": 10,
    }
    # Connect has no "contains": filtered here.
    assert [n.e164 for n in await carrier.search(NumberQuery("US", contains="0122"))] == [
        "+14155550122"
    ]
    tf = await carrier.search(NumberQuery("GB", "toll_free", limit=2))
    assert [n.e164 for n in tf] == ["+448081570000", "+448081570001"]
    assert await carrier.search(NumberQuery("GB", "mobile")) == []


async def test_connect_claim_waits_for_claimed_and_release(connect: FakeConnect) -> None:
    carrier = connect_carrier(connect)
    connect.in_progress_polls = 2
    number_id = await carrier.claim("+14155550100")
    assert connect.claimed[number_id].number == "+14155550100"
    describes = [p for m, p, _ in connect.requests if m == "GET"]
    assert describes == [f"/phone-number/{number_id}"] * 3  # IN_PROGRESS twice, CLAIMED
    with pytest.raises(NumberUnavailable):
        await carrier.claim("+14155550100")
    await carrier.release(number_id)
    assert connect.claimed == {}
    await carrier.release(number_id)  # ResourceNotFoundException: already released
    connect.fail_claims = True
    with pytest.raises(NumberUnavailable):
        await carrier.claim("+14155550101")


async def test_connect_bad_credentials_are_carrier_failures(connect: FakeConnect) -> None:
    with pytest.raises(CarrierFailure, match="InvalidSignatureException"):
        await connect_carrier(connect, secret_key="wrong").search(NumberQuery("US"))


async def test_api_with_connect(
    client: httpx.AsyncClient,
    admin_conn: Any,
    connect: FakeConnect,
    use_carriers: Callable[..., None],
) -> None:
    use_carriers(connect_carrier(connect))
    t = await create_tenant(client)
    h = t["headers"]
    r = await client.get(
        f"{URL}/available", params={"country": "US", "area_code": "212"}, headers=h
    )
    assert r.status_code == 200 and r.json()["carrier"] == "aws"
    assert [n["number"] for n in r.json()["items"]] == [f"+121255501{n:02d}" for n in range(5)]
    assert r.json()["items"][0]["monthly_price"] is None
    r = await client.post(URL, json={"number": "+12125550100"}, headers=h)
    assert r.status_code == 201 and r.json()["carrier"] == "aws"
    (number_id,) = connect.claimed
    assert await admin_conn.fetchval("SELECT carrier_ref FROM phone_numbers") == number_id
    assert (await client.delete(f"{URL}/{r.json()['id']}", headers=h)).status_code == 204
    assert connect.claimed == {}


async def test_api_answers_502_and_writes_nothing_when_aws_refuses_us(
    client: httpx.AsyncClient,
    admin_conn: Any,
    connect: FakeConnect,
    use_carriers: Callable[..., None],
) -> None:
    use_carriers(connect_carrier(connect, secret_key="rotated-away"))
    t = await create_tenant(client)
    r = await client.post(URL, json={"number": "+14155550100"}, headers=t["headers"])
    assert r.status_code == 502 and r.json()["code"] == "carrier-error"
    assert await nothing_written(admin_conn) and connect.claimed == {}
