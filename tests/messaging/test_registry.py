"""Which adapter serves which channel, and the pieces every adapter shares."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from app.channels.validation import PROVIDERS
from app.config import Settings
from app.messaging.providers import (
    UnsupportedProvider,
    WebhookRequest,
    adapter_for,
    api_base,
    is_stale,
)
from app.messaging.providers.registry import supported


def test_every_supported_pair_is_a_channel_provider() -> None:
    for channel_type, provider in supported():
        assert provider in PROVIDERS[channel_type], (channel_type, provider)
        adapter = adapter_for(channel_type, provider)
        assert (adapter.channel_type, adapter.provider) == (channel_type, provider)
        assert adapter_for(channel_type, provider) is adapter
    # Every messaging provider a channel can name has an adapter.
    named = {(t, p) for t, providers in PROVIDERS.items() for p in providers}
    assert named == set(supported())


def test_unsupported_pairs() -> None:
    for channel_type, provider in [("email", "twilio"), ("wechat", "meta")]:
        with pytest.raises(UnsupportedProvider):
            adapter_for(channel_type, provider)


def test_api_bases_come_from_settings() -> None:
    settings = Settings(
        twilio_api_base_url="http://127.0.0.1:9/",
        meta_graph_base="http://127.0.0.1:8",
        meta_graph_version="v22.0",
        wechat_api_base="http://127.0.0.1:7/",
    )
    assert api_base(settings, "twilio") == "http://127.0.0.1:9"
    assert api_base(settings, "meta") == "http://127.0.0.1:8/v22.0"
    assert api_base(settings, "wechat") == "http://127.0.0.1:7"
    assert api_base(settings, "sandbox") == ""
    assert api_base(settings, "aws") == "#region=us-east-1"  # the region's own endpoint
    defaults = Settings()
    assert api_base(defaults, "meta") == "https://graph.facebook.com/v21.0"
    assert defaults.webhook_max_age_seconds == 300


def test_is_stale_both_ways() -> None:
    now = datetime(2026, 11, 24, 12, 0, tzinfo=UTC)
    window = timedelta(minutes=5)
    assert not is_stale(now - window, now, window)
    assert is_stale(now - window - timedelta(seconds=1), now, window)
    assert is_stale(now + window + timedelta(seconds=1), now, window)


def test_request_reads_headers_any_case_and_first_query_values() -> None:
    req = WebhookRequest("POST", "https://h.example/x?a=1&a=2&b=", {"X-Thing": "v"}, b"")
    assert req.header("x-thing") == req.header("X-THING") == "v"
    assert req.header("missing") is None
    assert req.query == {"a": "1", "b": ""}
