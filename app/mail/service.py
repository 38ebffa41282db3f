"""Outbound mail: queued in the business transaction, delivered after it commits."""

from __future__ import annotations

import logging
import uuid

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import select

from app.db.base import utcnow
from app.db.engine import after_commit
from app.db.tenant import TenantScope, bind_tenant, mint_scope
from app.mail.adapters import MailSender
from app.mail.models import OutboundMail

log = logging.getLogger("switchboard.mail")


async def enqueue(
    session: AsyncSession,
    scope: TenantScope,
    sender: MailSender,
    factory: async_sessionmaker[AsyncSession] | None,
    *,
    kind: str,
    to: str,
    subject: str,
    body: str,
) -> OutboundMail:
    mail = OutboundMail(
        tenant_id=scope.tenant_id,
        kind=kind,
        to_address=to,
        subject=subject,
        body_text=body,
        backend=sender.name,
    )
    if sender.name == "dev":
        mail.sent_at = utcnow()
    session.add(mail)
    await session.flush()
    if sender.name != "dev" and factory is not None:
        tenant_id, mail_id = scope.tenant_id, mail.id

        async def deliver() -> None:
            await deliver_one(factory, sender, tenant_id, mail_id)

        after_commit(session, deliver)
    return mail


async def deliver_one(
    factory: async_sessionmaker[AsyncSession],
    sender: MailSender,
    tenant_id: uuid.UUID,
    mail_id: uuid.UUID,
) -> None:
    """Send one queued message and record the outcome (never raises)."""
    async with factory() as session, session.begin():
        await bind_tenant(session, mint_scope(tenant_id))
        stmt = (
            select(OutboundMail)
            .where(OutboundMail.tenant_id == tenant_id, OutboundMail.id == mail_id)
            .with_for_update(skip_locked=True)
        )
        mail = (await session.execute(stmt)).scalar_one_or_none()
        if mail is None or mail.sent_at is not None:
            return
        mail.attempts += 1
        try:
            await sender.send(mail.to_address, mail.subject, mail.body_text)
        except Exception as exc:  # delivery failures are recorded, retried by dispatch
            mail.last_error = f"{type(exc).__name__}: {exc}"[:500]
            log.warning("mail delivery failed", extra={"mail_id": str(mail_id)})
        else:
            mail.sent_at = utcnow()
            mail.last_error = None
