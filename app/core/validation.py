"""Validation helpers for request schemas: errors that name the exact item at fault.

A rule that spans several items (an interval overlapping an earlier one, a duplicate)
fails on the list as a whole in plain pydantic. ``fail_at`` raises from inside a
validator with a location relative to the value being validated, so the API answers
``body.weekly.mon.1`` rather than ``body.weekly.mon``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, NoReturn

from pydantic import ValidationError
from pydantic_core import InitErrorDetails, PydanticCustomError


def fail_at(loc: tuple[str | int, ...], message: str, value: Any = None) -> NoReturn:
    """Raise a validation error at ``loc`` below the value under validation."""
    raise ValidationError.from_exception_data(
        "validation",
        [
            InitErrorDetails(
                type=PydanticCustomError("value_error", "{reason}", {"reason": message}),
                loc=loc,
                input=value,
            )
        ],
    )


def reject_nulls(data: Any, fields: Iterable[str]) -> Any:
    """For PATCH bodies: an explicit null on a field that cannot be empty is an error
    (rather than silently meaning "unchanged")."""
    if isinstance(data, dict):
        for name in fields:
            if name in data and data[name] is None:
                fail_at((name,), "must not be null; leave the field out to keep it")
    return data


def patch_schema(
    fields: Iterable[str], examples: list[dict[str, Any]]
) -> Callable[[dict[str, Any]], None]:
    """A ``json_schema_extra`` hook for PATCH bodies: document ``fields`` as optional but
    never null (to match ``reject_nulls``), and add the examples."""
    names = frozenset(fields)

    def hook(schema: dict[str, Any]) -> None:
        schema["examples"] = examples
        for name, prop in schema.get("properties", {}).items():
            if name not in names or "anyOf" not in prop:
                continue
            kept = [s for s in prop["anyOf"] if s.get("type") != "null"]
            if len(kept) == 1:
                prop.pop("anyOf")
                prop.update(kept[0])
            else:
                prop["anyOf"] = kept
            if prop.get("default", 0) is None:
                prop.pop("default")

    return hook
