"""Strict E.164: the one spelling of a number we accept, store and compare.

A request must already send the canonical form ('+', country code, national number,
digits only); we never guess a country or reformat, so one number has one key in
``number_claims`` across all tenants. Validity follows the phonenumbers library
(Google's libphonenumber metadata), plus the ranges reserved for fiction, some of which
libphonenumber calls invalid although they are exactly what a sandbox should use.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Annotated

import phonenumbers
from phonenumbers import PhoneNumberType
from pydantic import AfterValidator, Field

from app.phone_numbers import fictional

E164_PATTERN = r"^\+[1-9][0-9]{1,14}$"
_E164 = re.compile(E164_PATTERN)

_TYPES = {
    PhoneNumberType.MOBILE: "mobile",
    PhoneNumberType.TOLL_FREE: "toll_free",
}


@dataclass(frozen=True)
class NumberFacts:
    e164: str
    country: str  # ISO 3166-1 alpha-2
    number_type: str  # local | mobile | toll_free


def check_e164(value: str) -> str:
    """Return ``value`` if it is a canonical, valid E.164 number; else ValueError."""
    if not _E164.match(value):
        raise ValueError(
            "must be an E.164 number: '+', country code and number, digits only "
            "(for example +14155550123)"
        )
    try:
        parsed = phonenumbers.parse(value, None)
    except phonenumbers.NumberParseException as exc:
        raise ValueError("is not a phone number") from exc
    canonical = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    if canonical != value:
        raise ValueError(f"is not in canonical E.164 form; write it as {canonical}")
    if not phonenumbers.is_possible_number(parsed):
        raise ValueError("has the wrong number of digits for its country")
    if not (phonenumbers.is_valid_number(parsed) or fictional.is_fictional(value)):
        raise ValueError("is not a valid number in its country's numbering plan")
    return value


def facts(e164: str) -> NumberFacts:
    """Country and kind of a number that passed ``check_e164``."""
    block = fictional.block_of(e164)
    if block is not None:
        return NumberFacts(e164, block.country, block.number_type)
    parsed = phonenumbers.parse(e164, None)
    region = phonenumbers.region_code_for_number(parsed) or (
        phonenumbers.region_code_for_country_code(parsed.country_code or 0)
    )
    kind = _TYPES.get(phonenumbers.number_type(parsed), "local")
    return NumberFacts(e164, region, kind)


def locality(e164: str) -> str | None:
    """The place a geographic number belongs to, when libphonenumber knows it."""
    from phonenumbers import geocoder

    block = fictional.block_of(e164)
    if block is not None:
        return block.locality
    try:
        return geocoder.description_for_number(phonenumbers.parse(e164, None), "en") or None
    except phonenumbers.NumberParseException:  # pragma: no cover - checked before
        return None


# A request field: strict E.164, with the pattern in the schema for clients to see.
E164 = Annotated[
    str,
    Field(
        min_length=3,
        max_length=16,
        json_schema_extra={"pattern": E164_PATTERN},
        examples=["+14155550123"],
    ),
    AfterValidator(check_e164),
]

SUPPORTED_COUNTRIES = frozenset(phonenumbers.SUPPORTED_REGIONS)
