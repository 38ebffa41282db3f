"""Messaging adapter fixtures: the local provider server and an HTTP client for sends."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx
import pytest

from tests.messaging.fake_providers import FakeProviders


@pytest.fixture
def providers() -> Iterator[FakeProviders]:
    fake = FakeProviders().start()
    try:
        yield fake
    finally:
        fake.stop()


@pytest.fixture
async def http() -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(timeout=5.0) as client:
        yield client


@pytest.fixture
def wired(app: Any, providers: FakeProviders) -> Iterator[FakeProviders]:
    """The app's provider API bases point at the local fake for this test (the app's
    settings are session-wide: restored afterwards)."""
    settings = app.state.settings
    names = ("twilio_api_base_url", "meta_graph_base", "wechat_api_base")
    saved = {name: getattr(settings, name) for name in names}
    for name in names:
        setattr(settings, name, providers.url)
    try:
        yield providers
    finally:
        for name, value in saved.items():
            setattr(settings, name, value)
