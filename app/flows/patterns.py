"""Regular expressions that tenants write (collect validation, branch ``matches``).

A tenant's pattern runs against a customer's input inside the interpreter, so it must
not be able to take exponential time. Python's ``re`` backtracks and has no timeout, so
we refuse the shapes that backtrack catastrophically: a repetition (``*``, ``+``,
``{2,}``) around anything of variable length (another quantifier that is not a fixed
count, or an alternation), and backreferences. Inputs are also bounded in length
(``MAX_INPUT``), which keeps the remaining polynomial cases small.
"""

from __future__ import annotations

import re
from re import _constants as sre  # type: ignore[attr-defined]
from re import _parser as sre_parse  # type: ignore[attr-defined]
from typing import Any

MAX_INPUT = 256

_REPEATS = {sre.MAX_REPEAT, sre.MIN_REPEAT, getattr(sre, "POSSESSIVE_REPEAT", sre.MAX_REPEAT)}
_BACKREFS = {
    sre.GROUPREF,
    sre.GROUPREF_EXISTS,
    sre.GROUPREF_IGNORE,
    sre.GROUPREF_LOC_IGNORE,
    sre.GROUPREF_UNI_IGNORE,
}


class _Unsafe(ValueError):
    pass


def _walk(items: Any, inside_repeat: bool) -> None:
    for op, av in items:
        if op in _BACKREFS:
            raise _Unsafe("backreferences are not supported")
        if op in _REPEATS:
            low, high, body = av
            if inside_repeat and low != high:
                raise _Unsafe("nested quantifiers (like (a+)+) can take exponential time")
            _walk(body, inside_repeat or high > 1)
        elif op is sre.BRANCH:
            if inside_repeat:
                raise _Unsafe("a repeated alternation (like (a|ab)*) can take exponential time")
            for alternative in av[1]:
                _walk(alternative, inside_repeat)
        elif op is sre.SUBPATTERN:
            _walk(av[3], inside_repeat)
        elif op in (sre.ASSERT, sre.ASSERT_NOT):
            _walk(av[1], inside_repeat)
        elif op is getattr(sre, "ATOMIC_GROUP", None):
            _walk(av, inside_repeat)


def check_pattern(pattern: str) -> str:
    """The pattern, if it compiles and cannot backtrack catastrophically; else ValueError."""
    try:
        re.compile(pattern)
        tree = sre_parse.parse(pattern)
    except (re.error, RecursionError, OverflowError) as exc:
        raise ValueError(f"is not a valid regular expression ({exc})") from None
    try:
        _walk(tree, inside_repeat=False)
    except _Unsafe as exc:
        raise ValueError(f"is refused: {exc}") from None
    return pattern


def full_match(pattern: str, value: str) -> bool:
    """Whether the whole value matches; overlong values never match."""
    if len(value) > MAX_INPUT:
        return False
    return re.fullmatch(pattern, value) is not None
