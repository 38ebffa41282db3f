"""Telephone numbers reserved for fiction and testing, which no subscriber can ever hold.

The sandbox carrier offers only these, so a demo or a test can never claim (or later
dial) a real person's number:

- NANP (+1): NXX-555-0100 to 0199 in every area code, reserved by the North American
  Numbering Plan Administrator for fictional use.
- United Kingdom (+44): Ofcom's "numbers for drama purposes" (for example
  020 7946 0000 to 0999 in London, 07700 900000 to 900999 for mobiles).
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import phonenumbers

# 555-01XX behind any area code phonenumbers accepts as real (the number as a whole must
# still be valid, so a made-up area code such as 211 is refused).
_NANP_FICTION = re.compile(r"^\+1[2-9][0-9]{2}55501[0-9]{2}$")


@dataclass(frozen=True)
class ReservedBlock:
    """A contiguous block of numbers: ``prefix`` followed by ``first``..``last``."""

    prefix: str  # E.164 digits before the variable part, with '+'
    first: int
    last: int
    width: int  # digits in the variable part
    country: str
    number_type: str  # local | mobile | toll_free
    locality: str | None

    @property
    def calling_code(self) -> str:
        return str(phonenumbers.country_code_for_region(self.country))

    def __contains__(self, e164: str) -> bool:
        if not e164.startswith(self.prefix) or len(e164) != len(self.prefix) + self.width:
            return False
        tail = e164[len(self.prefix) :]
        return tail.isascii() and tail.isdigit() and self.first <= int(tail) <= self.last

    def numbers(self) -> Iterator[str]:
        for n in range(self.first, self.last + 1):
            yield f"{self.prefix}{n:0{self.width}d}"


def _gb(
    prefix: str, first: int, last: int, width: int, kind: str, where: str | None
) -> ReservedBlock:
    return ReservedBlock("+44" + prefix, first, last, width, "GB", kind, where)


# Ofcom, "Telephone numbers for use in TV and radio drama programmes".
GB_BLOCKS: tuple[ReservedBlock, ...] = (
    _gb("207946", 0, 999, 4, "local", "London"),
    _gb("113496", 0, 999, 4, "local", "Leeds"),
    _gb("114496", 0, 999, 4, "local", "Sheffield"),
    _gb("115496", 0, 999, 4, "local", "Nottingham"),
    _gb("116496", 0, 999, 4, "local", "Leicester"),
    _gb("117496", 0, 999, 4, "local", "Bristol"),
    _gb("118496", 0, 999, 4, "local", "Reading"),
    _gb("121496", 0, 999, 4, "local", "Birmingham"),
    _gb("131496", 0, 999, 4, "local", "Edinburgh"),
    _gb("141496", 0, 999, 4, "local", "Glasgow"),
    _gb("151496", 0, 999, 4, "local", "Liverpool"),
    _gb("161496", 0, 999, 4, "local", "Manchester"),
    _gb("191498", 0, 999, 4, "local", "Tyneside"),
    _gb("289649", 6000, 6999, 4, "local", "Belfast"),
    _gb("292018", 0, 999, 4, "local", "Cardiff"),
    _gb("163296", 0, 999, 4, "local", None),
    _gb("7700900", 0, 999, 3, "mobile", None),
    _gb("808157", 0, 999, 4, "toll_free", None),
)

# Real US area codes the sandbox stocks (in this order); each holds 555-0100..0199.
US_AREA_CODES: dict[str, str] = {
    "415": "San Francisco, CA",
    "212": "New York, NY",
    "312": "Chicago, IL",
    "213": "Los Angeles, CA",
    "617": "Boston, MA",
    "206": "Seattle, WA",
    "512": "Austin, TX",
    "305": "Miami, FL",
    "404": "Atlanta, GA",
    "303": "Denver, CO",
    "202": "Washington, DC",
    "702": "Las Vegas, NV",
    "503": "Portland, OR",
    "602": "Phoenix, AZ",
    "612": "Minneapolis, MN",
    "615": "Nashville, TN",
    "713": "Houston, TX",
    "214": "Dallas, TX",
    "619": "San Diego, CA",
    "646": "New York, NY",
}

US_BLOCKS: tuple[ReservedBlock, ...] = tuple(
    ReservedBlock(f"+1{npa}5550", 100, 199, 3, "US", "local", where)
    for npa, where in US_AREA_CODES.items()
)


def is_fictional(e164: str) -> bool:
    """True for a number in a range reserved for fiction (the sandbox's whole world)."""
    if _NANP_FICTION.match(e164):
        return phonenumbers.is_valid_number(phonenumbers.parse(e164))
    return any(e164 in block for block in GB_BLOCKS)


def block_of(e164: str) -> ReservedBlock | None:
    """The reserved block a fictional number belongs to, if the sandbox stocks it."""
    return next((b for b in (*US_BLOCKS, *GB_BLOCKS) if e164 in b), None)


def blocks_for(country: str, number_type: str) -> list[ReservedBlock]:
    return [
        b for b in (*US_BLOCKS, *GB_BLOCKS) if b.country == country and b.number_type == number_type
    ]
