"""OpenAPI ``responses=`` entries for problem+json answers, with examples."""

from __future__ import annotations

from typing import Any

from app.core.errors import PROBLEM_JSON

ETAG_HEADER = {"ETag": {"description": "The version, for If-Match", "schema": {"type": "string"}}}


def problem(status: int, description: str, *examples: dict[str, Any]) -> dict[str, Any]:
    """A documented problem+json answer. Each example gives at least ``code`` and
    ``detail`` (and ``field`` where one is at fault); the rest is filled in."""
    titles = {
        403: "Forbidden",
        404: "Not found",
        409: "Conflict",
        412: "Precondition failed",
        422: "Validation failed",
    }
    named = {
        ex["code"] + (f" ({ex['field']})" if "field" in ex else ""): {
            "value": {
                "type": f"https://switchboard.dev/problems/{ex['code']}",
                "title": titles.get(status, "Error"),
                "status": status,
                **ex,
            }
        }
        for ex in examples
    }
    content: dict[str, Any] = {"schema": {"$ref": "#/components/schemas/Problem"}}
    if named:
        content["examples"] = named
    return {"description": description, "content": {PROBLEM_JSON: content}}


STALE_IF_MATCH = problem(
    412,
    "If-Match names an older version; nothing changed",
    {
        "code": "precondition-failed",
        "detail": 'The resource changed (now "3"); fetch it again and retry.',
        "field": "header.If-Match",
        "current_etag": '"3"',
    },
)
