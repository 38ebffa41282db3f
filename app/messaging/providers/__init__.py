"""Messaging provider adapters: one per (channel type, provider), found by
``registry.adapter_for``. See ``base`` for the interface."""

from app.messaging.providers.base import (
    DeliveryReceipt,
    InboundMessage,
    MediaRef,
    Outgoing,
    ProviderAdapter,
    ProviderError,
    SendResult,
    WebhookCheck,
    WebhookEvent,
    WebhookRefused,
    WebhookRequest,
    is_stale,
)
from app.messaging.providers.registry import UnsupportedProvider, adapter_for, api_base

__all__ = [
    "DeliveryReceipt",
    "InboundMessage",
    "MediaRef",
    "Outgoing",
    "ProviderAdapter",
    "ProviderError",
    "SendResult",
    "UnsupportedProvider",
    "WebhookCheck",
    "WebhookEvent",
    "WebhookRefused",
    "WebhookRequest",
    "adapter_for",
    "api_base",
    "is_stale",
]
