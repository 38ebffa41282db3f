"""Field types shared by request schemas, and the rules for text a person typed."""

from __future__ import annotations

import functools
import re
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, Strict

# Kept in text written across lines (a message, a note, a prompt); refused elsewhere.
LINE_BREAKS = "\n\r\t"
CONTROL_CHARACTERS = "must not contain control characters"

Whitespace = Literal["keep", "strip", "collapse"]


def check_unicode(v: str) -> str:
    """Lone surrogates (JSON's ``"\\ud800"``) have no UTF-8 form: PostgreSQL cannot hold
    them. A str field with a length constraint refuses them before its validators run;
    this covers the others (and values inside JSON objects)."""
    try:
        v.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError("must be valid Unicode (no lone surrogates)") from None
    return v


@functools.cache
def _refused_controls(allowed: str, c1: bool) -> re.Pattern[str]:
    c1_range = range(128, 160) if c1 else range(0)
    refused = [c for c in [*range(32), 127, *c1_range] if chr(c) not in allowed]
    return re.compile("[" + "".join(f"\\x{c:02x}" for c in refused) + "]")


def check_text(
    v: str,
    *,
    allowed_controls: str = "",
    refuse_c1: bool = False,
    whitespace: Whitespace = "keep",
    allow_blank: bool = False,
    control_reason: str = CONTROL_CHARACTERS,
    blank_reason: str = "must not be blank",
) -> str:
    """Text a person typed, checked in this order: no C0 control characters or DEL other
    than ``allowed_controls`` (NUL among them, which PostgreSQL text cannot hold), nor
    the C1 controls (U+0080-U+009F: a terminal reads U+009B as an escape) with
    ``refuse_c1``, refused with ``control_reason``; valid Unicode; white space kept,
    stripped at the ends or collapsed to single spaces; and not blank (empty or only
    white space) unless ``allow_blank``, refused with ``blank_reason``. Schemas wrap it
    in a named function for ``AfterValidator``: pydantic puts that name in the error
    location of a union's member."""
    if _refused_controls(allowed_controls, refuse_c1).search(v):
        raise ValueError(control_reason)
    check_unicode(v)
    if whitespace == "collapse":
        v = " ".join(v.split())
    elif whitespace == "strip":
        v = v.strip()
    if not allow_blank and not v.strip():
        raise ValueError(blank_reason)
    return v


def one_line(v: str) -> str:
    """A name, a file name, a URL: trimmed, inner runs of white space made one space."""
    return check_text(v, whitespace="collapse")


def plain_text(v: str) -> str:
    """A reference, an identity, an answer: kept exactly as sent, and may be blank."""
    return check_text(v, allow_blank=True)


def no_nul(v: str) -> str:
    if "\x00" in v:
        raise ValueError("must not contain NUL characters")
    return v


# A resource name: trimmed, no control characters, 1-100 characters.
Name = Annotated[str, Field(min_length=1, max_length=100), AfterValidator(one_line)]
# Free text: no NUL (PostgreSQL text cannot hold it), bounded.
Description = Annotated[str, Field(max_length=500), AfterValidator(no_nul)]

# Request flags and counts take JSON's own types only. Lax pydantic reads 0, 1, "true"
# and "yes" as booleans and true as the integer 1 (or "5", 5.0 as 5): a client sending
# those has a bug worth naming (422 on the field), not a guess.
StrictBool = Annotated[bool, Strict()]
StrictInt = Annotated[int, Strict()]
