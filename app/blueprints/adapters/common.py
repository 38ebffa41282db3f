"""Helpers shared by the blueprint adapters."""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from app.core.errors import InvalidInput

M = TypeVar("M", bound=BaseModel)


def parse(model: type[M], data: dict[str, Any], where: str) -> M:
    """Validate blueprint data with an API schema; errors name the blueprint path."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        from app.blueprints.adapters.generic import REFERENCES

        err = exc.errors()[0]
        # The blueprint names what the API calls by id: skill_id -> skill.
        loc = ".".join(
            REFERENCES[str(p)][0] if str(p) in REFERENCES else str(p) for p in err.get("loc", ())
        )
        field = f"{where}.{loc}" if loc else where
        raise InvalidInput(f"{field}: {err.get('msg', 'invalid')}", field=field) from None


def require_mapping(raw: object, where: str) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise InvalidInput(f"{where} must be a mapping", field=where)
    return raw


def pick(item: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: item[k] for k in keys if k in item}
