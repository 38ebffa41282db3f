"""Fixtures for phone numbers: contact flows to point numbers at, local carriers that
speak Twilio's and Amazon Connect's wire formats, and a way to put the API in front of
one of them."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config

from app.db.tenant import bind_tenant, mint_scope
from app.flows.models import Flow
from app.phone_numbers.carriers import Carrier, Carriers
from app.phone_numbers.carriers.aws import ConnectCarrier
from app.phone_numbers.carriers.twilio import TwilioCarrier
from app.phone_numbers.endpoints import get_carriers
from tests.phone_numbers.fake_connect import FakeConnect
from tests.phone_numbers.fake_twilio import FakeTwilio

MakeFlow = Callable[[dict[str, Any]], Awaitable[str]]


@pytest.fixture
def make_flow(app: Any) -> MakeFlow:
    """Insert a contact flow for ``tenant`` (the flows API is not ours to call)."""

    async def make(tenant: dict[str, Any], name: str = "Main menu") -> str:
        scope = mint_scope(uuid.UUID(tenant["tenant"]["id"]))
        flow = Flow(tenant_id=scope.tenant_id, name=name)
        async with app.state.session_factory() as session, session.begin():
            await bind_tenant(session, scope)
            session.add(flow)
        return str(flow.id)

    return make


@pytest.fixture
def twilio() -> Iterator[FakeTwilio]:
    fake = FakeTwilio().start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
def connect() -> Iterator[FakeConnect]:
    fake = FakeConnect().start()
    try:
        yield fake
    finally:
        fake.stop()


def twilio_carrier(fake: FakeTwilio, *, auth_token: str | None = None) -> TwilioCarrier:
    return TwilioCarrier(
        fake.account_sid,
        auth_token or fake.auth_token,
        api_base_url=fake.url,
        pricing_base_url=fake.url,
        timeout=5,
    )


def connect_carrier(fake: FakeConnect, *, secret_key: str | None = None) -> ConnectCarrier:
    client = boto3.client(
        "connect",
        region_name=fake.region,
        endpoint_url=fake.url,
        aws_access_key_id=fake.access_key,
        aws_secret_access_key=secret_key or fake.secret_key,
        config=Config(retries={"max_attempts": 1}),
    )
    return ConnectCarrier(client, fake.instance_arn, poll_seconds=0.01)


@pytest.fixture
async def use_carriers(app: Any) -> AsyncIterator[Callable[..., None]]:
    """Serve the API with the given carriers (the first one claims new numbers)."""

    def use(*carriers: Carrier) -> None:
        app.dependency_overrides[get_carriers] = lambda: Carriers.of(*carriers)

    yield use
    app.dependency_overrides.pop(get_carriers, None)
