"""One error type, rendered as RFC 9457 problem+json with a stable kebab-case code."""

from __future__ import annotations

import json
import logging
from typing import Any

import asyncpg
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.exc import DBAPIError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import compile_path

log = logging.getLogger("switchboard.errors")

PROBLEM_JSON = "application/problem+json"


class SwitchboardError(Exception):
    status: int = 400
    code: str = "bad-request"
    title: str = "Bad request"
    # Commit the request's transaction even though it answers with this error.
    keep_changes: bool = False

    def __init__(
        self,
        detail: str | None = None,
        *,
        status: int | None = None,
        code: str | None = None,
        title: str | None = None,
        field: str | None = None,
        headers: dict[str, str] | None = None,
        keep_changes: bool | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail or self.title)
        if keep_changes is not None:
            self.keep_changes = keep_changes
        if status is not None:
            self.status = status
        if code is not None:
            self.code = code
        if title is not None:
            self.title = title
        self.detail = detail or self.title
        self.field = field
        self.headers = headers or {}
        self.extra = extra


class NotFound(SwitchboardError):
    status, code, title = 404, "not-found", "Not found"


class Conflict(SwitchboardError):
    status, code, title = 409, "conflict", "Conflict"


class Unauthorized(SwitchboardError):
    status, code, title = 401, "unauthorized", "Authentication required"

    def __init__(self, detail: str | None = None, **kw: Any) -> None:
        kw.setdefault("headers", {"WWW-Authenticate": "Bearer"})
        super().__init__(detail, **kw)


class Forbidden(SwitchboardError):
    status, code, title = 403, "forbidden", "Forbidden"


class InvalidInput(SwitchboardError):
    status, code, title = 422, "validation-failed", "Validation failed"


class TooManyRequests(SwitchboardError):
    status, code, title = 429, "too-many-requests", "Too many requests"


def request_id_of(request: Request) -> str:
    return str(getattr(request.state, "request_id", "") or "")


def problem(
    request: Request,
    status: int,
    code: str,
    title: str,
    detail: str,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": f"https://switchboard.dev/problems/{code}",
        "title": title,
        "status": status,
        "code": code,
        "detail": detail,
        "instance": request.url.path,
        "request_id": request_id_of(request),
    }
    body.update({k: v for k, v in extra.items() if v is not None})
    return ProblemResponse(body, status_code=status, headers=headers)


class ProblemResponse(JSONResponse):
    """problem+json that always renders. A detail may quote the client's input, and a
    JSON string may carry a lone surrogate that UTF-8 cannot encode; ASCII-escaped
    JSON represents any string."""

    media_type = PROBLEM_JSON

    def render(self, content: Any) -> bytes:
        return json.dumps(content, ensure_ascii=True, separators=(",", ":")).encode("ascii")


def problem_response(description: str) -> dict[str, Any]:
    """An OpenAPI ``responses=`` entry for a problem+json answer."""
    return {
        "description": description,
        "content": {PROBLEM_JSON: {"schema": {"$ref": "#/components/schemas/Problem"}}},
    }


def _field_path(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc]
    # "body" / "query" / "path" / "header" prefixes say where; keep them after the field.
    return ".".join(parts)


def _reason(err: dict[str, Any]) -> str:
    msg = str(err.get("msg", "invalid"))
    return msg.removeprefix("Value error, ")


def _error_entry(err: dict[str, Any]) -> dict[str, Any]:
    loc = tuple(err.get("loc", ()))
    if err.get("type") == "json_invalid" and len(loc) == 2:
        # FastAPI puts the character offset where a field name belongs.
        error = (err.get("ctx") or {}).get("error", "malformed")
        return {
            "field": "body",
            "reason": f"is not valid JSON ({error} at character {loc[1]})",
            "type": "json_invalid",
        }
    return {"field": _field_path(loc), "reason": _reason(err), "type": err.get("type")}


def _is_json_media_type(content_type: str | None) -> bool:
    media_type = (content_type or "").split(";", 1)[0].strip().lower()
    return media_type == "application/json" or (
        media_type.startswith("application/") and media_type.endswith("+json")
    )


def _wrong_media_type(request: Request, errors: list[dict[str, Any]]) -> bool:
    """A body sent as something other than JSON: FastAPI hands the raw bytes to the
    model, which fails as a whole ("body") rather than field by field."""
    if _is_json_media_type(request.headers.get("content-type")):
        return False
    return any(tuple(e.get("loc", ())) == ("body",) and e.get("type") != "missing" for e in errors)


_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def _allowed_methods(request: Request) -> str | None:
    """``Allow`` for a 405: every method of the resource the path names, as the API
    documents it. Starlette's own names only the first route that matched the path,
    and FastAPI makes one route per method. Where several templates match (``/available``
    and ``/{number_id}``), the one with the fewest parameters is the resource. None for
    a path outside the schema (keep Starlette's answer)."""
    path = request.scope.get("path", "")
    best: tuple[int, list[str]] | None = None
    for template, operations in request.app.openapi().get("paths", {}).items():
        if compile_path(template)[0].match(path):
            params = template.count("{")
            if best is None or params < best[0]:
                best = (params, [m.upper() for m in operations if m.upper() in _METHODS])
    return ", ".join(sorted(best[1])) if best else None


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(SwitchboardError)
    async def _sb(request: Request, exc: SwitchboardError) -> JSONResponse:
        return problem(
            request,
            exc.status,
            exc.code,
            exc.title,
            exc.detail,
            headers=exc.headers,
            field=exc.field,
            **exc.extra,
        )

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        if _wrong_media_type(request, list(exc.errors())):
            return problem(
                request,
                415,
                "unsupported-media-type",
                "Unsupported media type",
                "Send the request body as application/json.",
                field="body",
            )
        errors = [_error_entry(e) for e in exc.errors()]
        first = errors[0] if errors else {"field": None, "reason": "invalid request"}
        return problem(
            request,
            422,
            "validation-failed",
            "Validation failed",
            f"{first['field']}: {first['reason']}",
            field=first["field"],
            errors=errors,
        )

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {
            400: ("bad-request", "Bad request"),
            404: ("not-found", "Not found"),
            405: ("method-not-allowed", "Method not allowed"),
            413: ("payload-too-large", "Payload too large"),
        }
        code, title = codes.get(exc.status_code, ("http-error", "HTTP error"))
        headers = dict(exc.headers or {})
        detail, field = str(exc.detail), None
        if exc.status_code == 405:
            allow = _allowed_methods(request)
            if allow:
                headers["Allow"] = allow
        elif exc.status_code == 400 and exc.__cause__ is not None:
            # FastAPI could not read the body as JSON for a reason other than syntax.
            field = "body"
            if isinstance(exc.__cause__, UnicodeDecodeError):
                detail = "body: is not valid UTF-8"
            elif isinstance(exc.__cause__, RecursionError):
                detail = "body: nests too deeply"
        return problem(request, exc.status_code, code, title, detail, headers=headers, field=field)

    @app.exception_handler(DBAPIError)
    async def _database(request: Request, exc: DBAPIError) -> JSONResponse:
        # Backstop: text PostgreSQL cannot store (NUL, or a character without a UTF-8
        # form) that slipped past validation is the client's input, not our failure.
        if _sqlstate(exc) in _UNSTORABLE_TEXT:
            log.warning("unstorable text reached the database: %s", exc.orig)
            return _unstorable(request)
        return _internal_error(request, exc)

    @app.exception_handler(asyncpg.PostgresError)
    async def _raw_database(request: Request, exc: asyncpg.PostgresError) -> JSONResponse:
        # The same backstop for code that talks to asyncpg directly (routing, ingest).
        if getattr(exc, "sqlstate", None) in _UNSTORABLE_TEXT:
            log.warning("unstorable text reached the database: %s", exc)
            return _unstorable(request)
        return _internal_error(request, exc)

    @app.exception_handler(Exception)
    async def _unhandled(request: Request, exc: Exception) -> JSONResponse:
        return _internal_error(request, exc)


# SQLSTATE 22021 character_not_in_repertoire (NUL), 22P05 untranslatable_character.
_UNSTORABLE_TEXT = frozenset({"22021", "22P05"})


def _unstorable(request: Request) -> JSONResponse:
    return problem(
        request,
        422,
        "invalid-text",
        "Validation failed",
        "A text value contains a character that cannot be stored (such as NUL).",
    )


def _sqlstate(exc: DBAPIError) -> str | None:
    orig: BaseException | None = exc.orig
    while orig is not None:
        state = getattr(orig, "sqlstate", None)
        if isinstance(state, str):
            return state
        orig = orig.__cause__
    return None


def _internal_error(request: Request, exc: BaseException) -> JSONResponse:
    log.error(
        "unhandled error",
        exc_info=(type(exc), exc, exc.__traceback__),
        extra={"request_id": request_id_of(request)},
    )
    return problem(
        request, 500, "internal-error", "Internal error", "An unexpected error occurred."
    )
