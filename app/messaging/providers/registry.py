"""The adapter for a channel's type and provider, and the API base URL it talks to."""

from __future__ import annotations

from collections.abc import Callable

from app.config import Settings
from app.messaging.providers.aws_sms import AwsSmsAdapter, sns_base
from app.messaging.providers.base import ProviderAdapter
from app.messaging.providers.meta import MetaAdapter
from app.messaging.providers.sandbox import SandboxAdapter
from app.messaging.providers.twilio import TwilioAdapter
from app.messaging.providers.wechat import WeChatAdapter

_ADAPTERS: dict[tuple[str, str], Callable[[], ProviderAdapter]] = {
    ("sms", "twilio"): lambda: TwilioAdapter("sms"),
    ("sms", "sandbox"): lambda: SandboxAdapter("sms"),
    ("sms", "aws"): AwsSmsAdapter,
    ("whatsapp", "twilio"): lambda: TwilioAdapter("whatsapp"),
    ("whatsapp", "meta"): lambda: MetaAdapter("whatsapp"),
    ("messenger", "meta"): lambda: MetaAdapter("messenger"),
    ("wechat", "wechat"): WeChatAdapter,
}
_CACHE: dict[tuple[str, str], ProviderAdapter] = {}


class UnsupportedProvider(LookupError):
    def __init__(self, channel_type: str, provider: str) -> None:
        super().__init__(f"no messaging adapter for {channel_type} through {provider}")
        self.channel_type, self.provider = channel_type, provider


def supported() -> list[tuple[str, str]]:
    return sorted(_ADAPTERS)


def adapter_for(channel_type: str, provider: str) -> ProviderAdapter:
    """The adapter for ``channel_type`` through ``provider``; UnsupportedProvider for a
    pair without one."""
    key = (channel_type, provider)
    if key not in _CACHE:
        make = _ADAPTERS.get(key)
        if make is None:
            raise UnsupportedProvider(channel_type, provider)
        _CACHE[key] = make()
    return _CACHE[key]


def api_base(settings: Settings, provider: str) -> str:
    """The base URL ``send`` takes for ``provider`` (Meta's includes the Graph version)."""
    if provider == "twilio":
        return settings.twilio_api_base_url.rstrip("/")
    if provider == "meta":
        return f"{settings.meta_graph_base.rstrip('/')}/{settings.meta_graph_version}"
    if provider == "wechat":
        return settings.wechat_api_base.rstrip("/")
    if provider == "aws":  # the SNS endpoint (empty: the region's) and the region
        return sns_base(settings.aws_sms_region, settings.aws_sms_endpoint_url)
    return ""  # the sandbox calls nothing
