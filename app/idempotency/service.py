"""Idempotency-Key for POSTs: a retry with the same key gets the first answer.

The key row is inserted at the start of the request's transaction, so a concurrent
retry waits on it (unique index) and then replays the committed answer; a failed first
attempt rolls the row back with everything else, so the retry runs afresh. Keys are
per tenant and kept for 24 hours.
"""

from __future__ import annotations

import hashlib
import re
from datetime import timedelta
from typing import Annotated, Any

from fastapi import Depends, Header, Request
from fastapi.encoders import jsonable_encoder
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy import delete, text
from sqlalchemy.dialects.postgresql import insert
from sqlmodel import col, select

from app.core.errors import InvalidInput, SwitchboardError
from app.db.base import utcnow
from app.db.engine import SessionDep
from app.idempotency.models import IdempotencyKey

RETENTION = timedelta(hours=24)
_KEY = re.compile(r"^[\x21-\x7e]{1,200}$")


class Idempotency:
    def __init__(self, request: Request, session: SessionDep, key: str | None) -> None:
        self.request, self.session, self.key = request, session, key
        self._claimed = False

    async def _fingerprint(self) -> str:
        body = await self.request.body()
        h = hashlib.sha256()
        h.update(self.request.method.encode() + b" " + self.request.url.path.encode() + b"\n")
        h.update(body)
        return h.hexdigest()

    async def replay(self) -> JSONResponse | None:
        """The stored answer for this key, or None when this request goes first.

        Call after authentication (the tenant must be bound on the session).
        """
        if self.key is None:
            return None
        scope = self.session.info.get("tenant_scope")
        if scope is None:  # pragma: no cover - programming error
            raise RuntimeError("Idempotency.replay() before the tenant was bound")
        fingerprint = await self._fingerprint()
        # Forget expired keys of this tenant (cheap: indexed by tenant and time).
        await self.session.execute(
            delete(IdempotencyKey).where(
                col(IdempotencyKey.tenant_id) == scope.tenant_id,
                col(IdempotencyKey.created_at) < utcnow() - RETENTION,
            )
        )
        ins = (
            insert(IdempotencyKey.__table__)  # type: ignore[attr-defined]
            .values(
                tenant_id=scope.tenant_id,
                key=self.key,
                fingerprint=fingerprint,
                created_at=utcnow(),
            )
            .on_conflict_do_nothing()
            .returning(text("1"))
        )
        if (await self.session.execute(ins)).first() is not None:
            self._claimed = True
            return None
        row = (
            await self.session.execute(
                select(IdempotencyKey)
                .where(IdempotencyKey.tenant_id == scope.tenant_id, IdempotencyKey.key == self.key)
                .execution_options(populate_existing=True)
            )
        ).scalar_one()
        if row.fingerprint != fingerprint:
            raise InvalidInput(
                "This Idempotency-Key was used with a different request.",
                code="idempotency-key-reused",
                field="header.Idempotency-Key",
            )
        if row.status_code is None or row.response is None:  # pragma: no cover - defensive
            raise SwitchboardError(
                "The first request with this key is still running.",
                status=409,
                code="idempotency-key-in-flight",
            )
        return JSONResponse(
            row.response,
            status_code=row.status_code,
            headers={**(row.headers or {}), "Idempotent-Replayed": "true"},
        )

    async def respond(
        self,
        status_code: int,
        body: BaseModel | dict[str, Any],
        headers: dict[str, str] | None = None,
    ) -> JSONResponse:
        """Answer, and remember the answer for retries with the same key."""
        payload = jsonable_encoder(body)
        if self._claimed:
            await self.session.execute(
                IdempotencyKey.__table__.update()  # type: ignore[attr-defined]
                .where(
                    IdempotencyKey.__table__.c.tenant_id  # type: ignore[attr-defined]
                    == self.session.info["tenant_scope"].tenant_id
                )
                .where(IdempotencyKey.__table__.c.key == self.key)  # type: ignore[attr-defined]
                .values(status_code=status_code, response=payload, headers=_kept(headers))
            )
        return JSONResponse(payload, status_code=status_code, headers=headers)


def _kept(headers: dict[str, str] | None) -> dict[str, str] | None:
    """Response headers a replay repeats (the ETag, a Location)."""
    keep = {k: v for k, v in (headers or {}).items() if k.lower() in {"etag", "location"}}
    return keep or None


def _idempotency(
    request: Request,
    session: SessionDep,
    idempotency_key: Annotated[
        str | None,
        Header(
            alias="Idempotency-Key",
            max_length=200,
            description="Retry-safe POST: a replay with the same key returns the first "
            "answer (kept 24 h). Printable ASCII, up to 200 characters.",
        ),
    ] = None,
) -> Idempotency:
    if idempotency_key is not None and not _KEY.match(idempotency_key):
        raise InvalidInput(
            "must be 1-200 printable ASCII characters", field="header.Idempotency-Key"
        )
    return Idempotency(request, session, idempotency_key)


IdempotencyDep = Annotated[Idempotency, Depends(_idempotency)]
