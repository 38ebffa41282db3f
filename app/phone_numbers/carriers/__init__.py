"""Carrier adapters behind one interface (``base.Carrier``): sandbox, twilio, aws."""

from __future__ import annotations

from collections.abc import Callable

from app.config import Settings
from app.phone_numbers.carriers.base import (
    AvailableNumber,
    Carrier,
    CarrierFailure,
    NumberNotOffered,
    NumberQuery,
    NumberUnavailable,
    Price,
)
from app.phone_numbers.carriers.sandbox import SandboxCarrier, TakenCheck

__all__ = [
    "AvailableNumber",
    "Carrier",
    "CarrierFailure",
    "Carriers",
    "NumberNotOffered",
    "NumberQuery",
    "NumberUnavailable",
    "Price",
    "SandboxCarrier",
]


class Carriers:
    """The configured carrier for new numbers, and each carrier by name for numbers
    claimed earlier (a number is released at the carrier that holds it, even after the
    configuration moved on). Adapters are built on first use."""

    def __init__(self, default: str, build: Callable[[str], Carrier]) -> None:
        self.default_name = default
        self._build = build
        self._built: dict[str, Carrier] = {}

    @property
    def default(self) -> Carrier:
        return self.named(self.default_name)

    def named(self, name: str) -> Carrier:
        if name not in self._built:
            self._built[name] = self._build(name)
        return self._built[name]

    @classmethod
    def of(cls, *carriers: Carrier) -> Carriers:
        """A fixed set; the first is the default (tests, scripts)."""
        by_name = {c.name: c for c in carriers}

        def build(name: str) -> Carrier:
            if name not in by_name:
                raise CarrierFailure(name, "not configured")
            return by_name[name]

        return cls(carriers[0].name, build)

    @classmethod
    def from_settings(
        cls,
        settings: Settings,
        taken: TakenCheck | None = None,
        shared: dict[str, Carrier] | None = None,
    ) -> Carriers:
        """The carriers ``settings`` configure. ``taken`` lets the sandbox skip numbers
        held on the platform; ``shared`` keeps the remote adapters (HTTP and AWS
        clients) from one request to the next."""
        shared = {} if shared is None else shared

        def build(name: str) -> Carrier:
            if name == "sandbox":
                return SandboxCarrier(taken)
            if name not in shared:
                shared[name] = _remote(name, settings)
            return shared[name]

        return cls(settings.carrier, build)


def _remote(name: str, settings: Settings) -> Carrier:
    if name == "twilio":
        from app.phone_numbers.carriers.twilio import TwilioCarrier

        return TwilioCarrier.from_settings(settings)
    if name == "aws":
        from app.phone_numbers.carriers.aws import ConnectCarrier

        return ConnectCarrier.from_settings(settings)
    raise CarrierFailure(name, "unknown carrier")
