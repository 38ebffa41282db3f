from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from sqlalchemy import text

from app.db.bootstrap import head_revisions

router = APIRouter(tags=["health"])


@router.get("/healthz", summary="Liveness: the process answers")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get(
    "/readyz",
    summary="Readiness: the database answers and migrations are at head",
    responses={
        503: {
            "description": "Not ready",
            "content": {"application/json": {"schema": {"type": "object"}}},
        }
    },
)
async def readyz(request: Request) -> JSONResponse:
    expected = head_revisions()
    try:
        async with request.app.state.engine.connect() as conn:
            rows = await conn.execute(text("SELECT version_num FROM alembic_version"))
            current = {r[0] for r in rows}
    except Exception as exc:  # any database failure means "not ready"
        return JSONResponse(
            {"status": "unavailable", "database": "unreachable", "error": type(exc).__name__},
            status_code=503,
        )
    if current != expected:
        return JSONResponse(
            {
                "status": "unavailable",
                "database": "ok",
                "migrations": "behind",
                "current": sorted(current),
                "head": sorted(expected),
            },
            status_code=503,
        )
    return JSONResponse(
        {"status": "ok", "database": "ok", "migrations": "head", "revision": sorted(current)}
    )
