"""OpenAPI ``responses=`` entries shared by every domain: problem+json answers with an
example body for each error code a route can answer, and the ETag header.

Build example bodies with :func:`example` (or the helpers for errors every domain
raises alike), then group them per status with :func:`problem`::

    responses={
        201: WITH_ETAG,
        409: name_taken("queue-name-taken", "A queue named 'Billing (EN)' exists."),
        412: PRECONDITION_FAILED,
    }
"""

from __future__ import annotations

from typing import Any

from app.core.errors import PROBLEM_JSON

ETAG_HEADER = {"ETag": {"description": "The version, for If-Match", "schema": {"type": "string"}}}
# A success answer that carries the resource's ETag.
WITH_ETAG: dict[str, Any] = {"headers": ETAG_HEADER}

# The titles the error classes give each status (app/core/errors.py).
TITLES = {
    403: "Forbidden",
    404: "Not found",
    409: "Conflict",
    412: "Precondition failed",
    422: "Validation failed",
}


def example(
    status: int,
    code: str,
    detail: str,
    *,
    field: str | None = None,
    title: str | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A problem+json body as the error handler renders it (without the per-request
    ``instance`` and ``request_id``). ``extra`` are the error's own members."""
    body: dict[str, Any] = {
        "type": f"https://switchboard.dev/problems/{code}",
        "title": title or TITLES.get(status, "Error"),
        "status": status,
        "code": code,
        "detail": detail,
    }
    if field:
        body["field"] = field
    return body | extra


def problem(description: str, *examples: dict[str, Any]) -> dict[str, Any]:
    """A ``responses=`` entry: problem+json with each example named by its code (and by
    its field too where the code comes more than once)."""
    codes = [e["code"] for e in examples]
    named: dict[str, Any] = {}
    for e in examples:
        name = e["code"] if codes.count(e["code"]) == 1 else f"{e['code']} ({e.get('field')})"
        if name in named:
            raise ValueError(f"two examples named {name!r}")
        named[name] = {"summary": name, "value": e}
    content: dict[str, Any] = {"schema": {"$ref": "#/components/schemas/Problem"}}
    if named:
        content["examples"] = named
    return {"description": description, "content": {PROBLEM_JSON: content}}


# -- errors every domain answers alike ------------------------------------------------------


def quota_exceeded(resource: str, limit: int) -> dict[str, Any]:
    """The 403 body of app/quotas/service.py when the plan's ``resource`` are all in use."""
    return example(
        403,
        "quota-exceeded",
        f"Your plan allows {limit} {resource.replace('_', ' ')}; {limit} in use.",
        resource=resource,
        limit=limit,
        current=limit,
    )


def insufficient_scope(scope: str) -> dict[str, Any]:
    """The 403 body of app/auth/principal.py when the caller lacks ``scope``."""
    return example(
        403,
        "insufficient-scope",
        f"This call needs the scope '{scope}'.",
        required_scope=scope,
    )


def scope_or_quota(scope: str, resource: str, limit: int) -> dict[str, Any]:
    """403 on a route that needs ``scope`` and takes one of the plan's ``resource``."""
    return problem(
        f"Missing the {scope} scope, or the plan's {resource.replace('_', ' ')} are all in use",
        insufficient_scope(scope),
        quota_exceeded(resource, limit),
    )


def not_found(code: str) -> dict[str, Any]:
    """404 for ``<thing>-not-found``: no such thing in the caller's tenant."""
    thing = code.removesuffix("-not-found").replace("-", " ")
    return problem(
        f"No such {thing} (or another tenant's)", example(404, code, f"No such {thing}.")
    )


def name_taken(code: str, detail: str) -> dict[str, Any]:
    """409 for a name another resource of the tenant has (compared case-insensitively)."""
    return problem(
        "The name is taken in this tenant", example(409, code, detail, field="body.name")
    )


PRECONDITION_FAILED = problem(
    "If-Match names an older version; nothing changed",
    example(
        412,
        "precondition-failed",
        'The resource changed (now "3"); fetch it again and retry.',
        field="header.If-Match",
        current_etag='"3"',
    ),
)
