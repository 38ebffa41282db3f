"""Field types shared by request schemas."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field, Strict


def _clean_text(v: str) -> str:
    if any(ord(c) < 32 or ord(c) == 127 for c in v):
        raise ValueError("must not contain control characters")
    v = " ".join(v.split())
    if not v:
        raise ValueError("must not be blank")
    return v


def _no_nul(v: str) -> str:
    if "\x00" in v:
        raise ValueError("must not contain NUL characters")
    return v


# A resource name: trimmed, no control characters, 1-100 characters.
Name = Annotated[str, Field(min_length=1, max_length=100), AfterValidator(_clean_text)]
# Free text: no NUL (PostgreSQL text cannot hold it), bounded.
Description = Annotated[str, Field(max_length=500), AfterValidator(_no_nul)]

# Request flags and counts take JSON's own types only. Lax pydantic reads 0, 1, "true"
# and "yes" as booleans and true as the integer 1 (or "5", 5.0 as 5): a client sending
# those has a bug worth naming (422 on the field), not a guess.
StrictBool = Annotated[bool, Strict()]
StrictInt = Annotated[int, Strict()]
