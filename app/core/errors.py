"""One error type, rendered as RFC 9457 problem+json with a stable kebab-case code."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

log = logging.getLogger("switchboard.errors")

PROBLEM_JSON = "application/problem+json"


class SwitchboardError(Exception):
    status: int = 400
    code: str = "bad-request"
    title: str = "Bad request"

    def __init__(
        self,
        detail: str | None = None,
        *,
        status: int | None = None,
        code: str | None = None,
        title: str | None = None,
        field: str | None = None,
        headers: dict[str, str] | None = None,
        **extra: Any,
    ) -> None:
        super().__init__(detail or self.title)
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
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def _field_path(loc: tuple[Any, ...] | list[Any]) -> str:
    parts = [str(p) for p in loc]
    # "body" / "query" / "path" / "header" prefixes say where; keep them after the field.
    return ".".join(parts)


def _reason(err: dict[str, Any]) -> str:
    msg = str(err.get("msg", "invalid"))
    return msg.removeprefix("Value error, ")


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
        errors = [
            {"field": _field_path(e.get("loc", ())), "reason": _reason(e), "type": e.get("type")}
            for e in exc.errors()
        ]
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
            404: ("not-found", "Not found"),
            405: ("method-not-allowed", "Method not allowed"),
            413: ("payload-too-large", "Payload too large"),
        }
        code, title = codes.get(exc.status_code, ("http-error", "HTTP error"))
        return problem(
            request,
            exc.status_code,
            code,
            title,
            str(exc.detail),
            headers=dict(exc.headers or {}),
        )

    @app.exception_handler(Exception)
    async def _unhandled(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", extra={"request_id": request_id_of(request)})
        return problem(
            request, 500, "internal-error", "Internal error", "An unexpected error occurred."
        )
