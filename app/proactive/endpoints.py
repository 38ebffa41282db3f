"""Proactive rules (provisioning), the decision log, and proactive outbound messages."""

from __future__ import annotations

import json
import uuid
from typing import Annotated, Any

import asyncpg
from fastapi import APIRouter, Depends, Query, Request, Response, status

from app.audit.service import audit
from app.auth.principal import Principal, require
from app.auth.scopes import register
from app.core.concurrency import IfMatchDep, etag, with_etag
from app.core.errors import problem as problem_response
from app.core.openapi import (
    PRECONDITION_FAILED,
    WITH_ETAG,
    example,
    name_taken,
    not_found,
    problem,
)
from app.core.pagination import Page, PageParams, page_of, page_params
from app.db.engine import SessionDep
from app.idempotency.service import IdempotencyDep
from app.proactive import outreach, repository, rules
from app.proactive.models import ProactiveRule
from app.proactive.schemas import (
    DecisionKind,
    DecisionRead,
    ProactiveMessageCreate,
    ProactiveMessageSent,
    RuleCreate,
    RuleRead,
    RuleUpdate,
)
from app.routing.snapshots import decode_json

register(
    "proactive:read",
    "Read proactive rules and the decisions to contact customers or hold back",
    ("owner", "admin", "supervisor"),
)
register(
    "proactive:write",
    "Create, change and delete proactive rules; send proactive messages",
    ("owner", "admin"),
)

router = APIRouter(tags=["proactive"])

ProactiveRead = Annotated[Principal, require("proactive:read")]
ProactiveWrite = Annotated[Principal, require("proactive:write")]

RULE_NOT_FOUND = not_found("proactive-rule-not-found")
NAME_TAKEN = name_taken(
    "proactive-rule-name-taken", "A proactive rule named 'Checkout help' exists."
)
RULE_INVALID = problem(
    "Validation failed: names the field and the reason",
    example(
        422,
        "validation-failed",
        "body.conditions: Value error, give at least one condition: min_pages_seen, "
        "url_contains, min_dwell_seconds or attribute",
        field="body.conditions",
    ),
    example(
        422,
        "validation-failed",
        "body.conditions.attribute.value: must be a number for op gte",
        field="body.conditions.attribute.value",
    ),
    example(
        422,
        "unknown-reference",
        "body.channel_id: no such channel in this tenant",
        field="body.channel_id",
    ),
    example(
        422,
        "channel-not-webchat",
        "body.channel_id: proactive rules run in the web chat widget; this is a sms channel",
        field="body.channel_id",
    ),
)


def _rule(rule: ProactiveRule) -> RuleRead:
    return RuleRead.model_validate(rule, from_attributes=True)


def _decision(row: asyncpg.Record) -> DecisionRead:
    return DecisionRead(
        id=row["id"],
        customer_id=row["customer_id"],
        rule_id=row["rule_id"],
        channel=row["channel"],
        decision=row["decision"],
        reason=row["reason"],
        detail=decode_json(row["detail"]),
        at=row["at"],
    )


# -- rules ---------------------------------------------------------------------------------


@router.post(
    "/v1/proactive-rules",
    status_code=status.HTTP_201_CREATED,
    response_model=RuleRead,
    summary="Create a proactive rule",
    responses={201: WITH_ETAG, 409: NAME_TAKEN, 422: RULE_INVALID},
)
async def create_rule(
    body: RuleCreate,
    request: Request,
    session: SessionDep,
    principal: ProactiveWrite,
    idem: IdempotencyDep,
) -> Response:
    """A rule the web chat widget evaluates on each page view: when all its conditions
    hold, invite the visitor to chat or offer a callback. Rules run by ascending
    priority; the first that matches decides. Platform limits (frequency cap, quiet
    hours, consent) still apply and cannot be loosened by a rule."""
    if (replay := await idem.replay()) is not None:
        return replay
    rule = await rules.create(session, principal.scope, body)
    audit(
        request,
        "proactive_rule.create",
        "proactive_rule",
        rule.id,
        name=rule.name,
        rule_action=rule.action,
        enabled=rule.enabled,
    )
    return await idem.respond(201, _rule(rule), headers={"ETag": etag(rule.version)})


@router.get("/v1/proactive-rules", response_model=Page[RuleRead], summary="List proactive rules")
async def list_rules(
    session: SessionDep,
    principal: ProactiveRead,
    page: Annotated[PageParams, Depends(page_params)],
) -> Page[RuleRead]:
    """The tenant's rules, newest first."""
    rows = await repository.list_page(session, principal.scope, page.limit, page.after_id)
    return page_of(rows, page.limit, _rule)


@router.get(
    "/v1/proactive-rules/{rule_id}",
    response_model=RuleRead,
    summary="Get a proactive rule",
    responses={200: WITH_ETAG, 404: RULE_NOT_FOUND},
)
async def get_rule(rule_id: uuid.UUID, session: SessionDep, principal: ProactiveRead) -> Response:
    rule = await rules.get(session, principal.scope, rule_id)
    return with_etag(_rule(rule), rule.version)


@router.patch(
    "/v1/proactive-rules/{rule_id}",
    response_model=RuleRead,
    summary="Change a proactive rule",
    responses={
        200: WITH_ETAG,
        404: RULE_NOT_FOUND,
        409: NAME_TAKEN,
        412: PRECONDITION_FAILED,
        422: RULE_INVALID,
    },
)
async def update_rule(
    rule_id: uuid.UUID,
    body: RuleUpdate,
    request: Request,
    session: SessionDep,
    principal: ProactiveWrite,
    if_match: IfMatchDep,
) -> Response:
    """Fields given replace the stored ones (conditions whole). Send If-Match with the
    ETag you read; a stale one answers 412."""
    rule, changed = await rules.update(session, principal.scope, rule_id, body, if_match)
    audit(
        request,
        "proactive_rule.update",
        "proactive_rule",
        rule.id,
        changed=sorted(changed) or None,
        changes={k: str(v) if isinstance(v, uuid.UUID) else v for k, v in changed.items()} or None,
    )
    return with_etag(_rule(rule), rule.version)


@router.delete(
    "/v1/proactive-rules/{rule_id}",
    status_code=status.HTTP_204_NO_CONTENT,
    summary="Delete a proactive rule",
    responses={404: RULE_NOT_FOUND, 412: PRECONDITION_FAILED},
)
async def delete_rule(
    rule_id: uuid.UUID,
    request: Request,
    session: SessionDep,
    principal: ProactiveWrite,
    if_match: IfMatchDep,
) -> Response:
    """Delete the rule; its past decisions stay in the decision log."""
    rule = await rules.delete(session, principal.scope, rule_id, if_match)
    audit(request, "proactive_rule.delete", "proactive_rule", rule.id, name=rule.name)
    return Response(status_code=status.HTTP_204_NO_CONTENT)


# -- decisions -----------------------------------------------------------------------------


@router.get(
    "/v1/proactive-decisions",
    response_model=Page[DecisionRead],
    summary="List proactive decisions",
)
async def list_decisions(
    session: SessionDep,
    principal: ProactiveRead,
    page: Annotated[PageParams, Depends(page_params)],
    customer_id: Annotated[uuid.UUID | None, Query(description="Only this customer's")] = None,
    decision: Annotated[DecisionKind | None, Query(description="contact or hold")] = None,
    rule_id: Annotated[uuid.UUID | None, Query(description="Only this rule's")] = None,
) -> Page[DecisionRead]:
    """Every decision to contact a customer or hold back, newest first, with its reason
    and what was weighed (contacts in the window, local time and timezone, consent)."""
    rows = await repository.list_decisions(
        session,
        principal.scope,
        page.limit,
        page.after_id,
        customer_id=customer_id,
        decision=decision,
        rule_id=rule_id,
    )
    return page_of(rows, page.limit, _decision, key=lambda r: r["id"])


# -- proactive outbound messages -----------------------------------------------------------

HELD_EXAMPLE = example(
    409,
    "proactive-held",
    "Not sent: frequency-cap.",
    reason="frequency-cap",
    decision_id="019a2b7c-0000-7000-8000-0000000000e9",
    decision_detail={"contacts_in_window": 3, "max_contacts": 3, "window_days": 7},
)


@router.post(
    "/v1/customers/{customer_id}/proactive-messages",
    status_code=status.HTTP_201_CREATED,
    response_model=ProactiveMessageSent,
    summary="Send a proactive message",
    responses={
        404: not_found("customer-not-found"),
        409: problem(
            "Held back by the platform's limits (the decision is recorded), or the channel "
            "is disabled",
            HELD_EXAMPLE,
            example(409, "channel-disabled", "The channel is disabled.", field="body.channel_id"),
        ),
        422: problem(
            "Validation failed: names the field and the reason",
            example(
                422,
                "channel-not-outbound",
                "body.channel_id: proactive messages go out on sms, email, whatsapp, wechat, "
                "messenger channels, not webchat (web chat invites through proactive rules)",
                field="body.channel_id",
            ),
            example(
                422,
                "no-address-for-channel",
                "body.channel_id: the customer has no phone address for a sms channel "
                "(or it bounces)",
                field="body.channel_id",
            ),
        ),
    },
)
async def send_proactive_message(
    customer_id: uuid.UUID,
    body: ProactiveMessageCreate,
    request: Request,
    session: SessionDep,
    principal: ProactiveWrite,
    idem: IdempotencyDep,
) -> Response:
    """Write to a customer first, on an sms, email, whatsapp, wechat or messenger
    channel. It needs the customer's opt-in (consent ``granted`` for that channel), and
    counts against the frequency cap shared with web chat invitations; none go out in
    the customer's quiet hours. When held, the answer is 409 ``proactive-held`` with the
    reason, and the decision stays in the log. When allowed, a conversation opens on the
    channel and the message is queued for delivery; the customer's reply routes it."""
    if (replay := await idem.replay()) is not None:
        return replay
    state = request.app.state
    result = await outreach.send_proactive_message(
        session,
        principal.scope,
        customer_id=customer_id,
        channel_id=body.channel_id,
        text=body.text,
        store=state.object_store,
        settings=state.settings,
        factory=state.session_factory,
    )
    decision = _decision(result.decision)
    if result.held:
        audit(
            request,
            "proactive.message_held",
            "customer",
            customer_id,
            channel_id=str(body.channel_id),
            reason=decision.reason,
            decision_id=str(decision.id),
        )
        answer = problem_response(
            request,
            409,
            "proactive-held",
            "Conflict",
            f"Not sent: {decision.reason}.",
            reason=decision.reason,
            decision_id=str(decision.id),
            decision_detail=decision.detail,
        )
        stored: dict[str, Any] = json.loads(bytes(answer.body))
        await idem.respond(409, stored)
        return answer
    assert result.conversation_id is not None and result.message is not None
    audit(
        request,
        "proactive.message",
        "customer",
        customer_id,
        channel_id=str(body.channel_id),
        conversation_id=str(result.conversation_id),
        message_id=str(result.message.id),
        decision_id=str(decision.id),
    )
    sent = ProactiveMessageSent(
        decision=decision, conversation_id=result.conversation_id, message=result.message
    )
    return await idem.respond(201, sent)
