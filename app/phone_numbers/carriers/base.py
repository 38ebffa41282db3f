"""The carrier interface: search a carrier's inventory, claim a number, release it.

Adapters speak one provider each and raise only the exceptions below; the service
turns them into the API's answers (409, 422, 502), so no adapter knows about HTTP
status codes of our own API.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

import phonenumbers

NumberType = Literal["local", "toll_free", "mobile"]


@dataclass(frozen=True)
class NumberQuery:
    country: str  # ISO 3166-1 alpha-2, upper case
    number_type: NumberType = "local"
    area_code: str | None = None  # leading digits of the national number
    contains: str | None = None  # digits anywhere in the national number
    limit: int = 20


@dataclass(frozen=True)
class Price:
    amount_minor: int  # per month, in the currency's minor unit (cents, pence)
    currency: str  # ISO 4217


@dataclass(frozen=True)
class AvailableNumber:
    e164: str
    country: str
    number_type: NumberType
    voice: bool
    sms: bool
    monthly_price: Price | None  # None: the carrier's search does not quote one
    locality: str | None = None


class CarrierFailure(Exception):
    """The carrier could not be reached, refused our credentials, or answered nonsense."""

    def __init__(self, carrier: str, reason: str) -> None:
        super().__init__(f"{carrier}: {reason}")
        self.carrier, self.reason = carrier, reason


class NumberUnavailable(Exception):
    """The carrier says the number cannot be claimed (someone else has it)."""


class NumberNotOffered(Exception):
    """The number is one this carrier never offers (the sandbox: a real number)."""


class Carrier(Protocol):
    name: str

    async def search(self, query: NumberQuery) -> list[AvailableNumber]:
        """Numbers available now, at most ``query.limit``."""
        ...

    async def claim(self, e164: str) -> str:
        """Take the number onto our account; returns the carrier's reference for it."""
        ...

    async def release(self, carrier_ref: str) -> None:
        """Give the number back. Releasing one the carrier no longer has is not an error."""
        ...


def national_number(e164: str) -> str:
    """The national significant number: '+14155550123' -> '4155550123'."""
    return phonenumbers.national_significant_number(phonenumbers.parse(e164, None))


def matches(e164: str, query: NumberQuery) -> bool:
    """Whether a number passes the query's area-code and contains filters (adapters
    apply them locally where the provider's own search cannot)."""
    return national_matches(national_number(e164), query)


def national_matches(national: str, query: NumberQuery) -> bool:
    if query.area_code and not national.startswith(query.area_code):
        return False
    return not (query.contains and query.contains not in national)
