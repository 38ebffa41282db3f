"""Webhook ingress for SMS, WhatsApp, WeChat and Messenger (docs/decisions/0019).

Public endpoints: the provider's signature is the authentication. Per request: read the
raw body (capped), find the channel the account belongs to on the platform address
table and bind its tenant, refuse unless the channel is enabled, verify the signature
with the channel's secret (Twilio signs the public URL, rebuilt from
``settings.public_url``, never from the Host header), then parse and apply
(``app.messaging.ingest``). Answers:

- unknown account, disabled channel, suspended tenant: 404, all alike;
- bad or missing signature: 403 ``signature-invalid``; a signed time too old or too far
  ahead (WeChat, sandbox): 403 ``stale-request``;
- a body the provider would never send: 400 ``malformed-webhook``;
- a replay: 200 as the provider expects, nothing done;
- Amazon SNS (sms/aws): its signing certificate is fetched (cached) before the
  signature is checked, 503 when its host does not answer (SNS retries); the topic must
  be in the AWS account of the channel's access key (STS, cached; 503 when STS does not
  answer), since SNS signs every account's topics alike; a verified
  SubscriptionConfirmation is confirmed (GET SubscribeURL on an allowed host), 200;
- otherwise 200 in the provider's format (Twilio: empty TwiML; Meta: EVENT_RECEIVED;
  WeChat: success; sandbox and SNS: JSON counts).

Bodies and secrets are never logged. Every outcome is counted in
``switchboard_webhook_requests`` (channel type, provider, outcome, tenant) and logged
with ``tenant.id`` when the tenant is known.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Path, Request, Response
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import Counter

from app.config import Settings
from app.core.crypto import app_cipher
from app.core.errors import NotFound, SwitchboardError
from app.core.openapi import example, problem
from app.core.telemetry import tag_tenant
from app.db.base import utcnow
from app.db.engine import run_after_commit
from app.messaging import senders as _senders  # noqa: F401 - registers the outbound senders
from app.messaging.ingest import (
    IngressChannel,
    Outcome,
    apply,
    apply_bound,
    find_channel,
    needs_prefetch,
    receipt_key,
    take_request,
)
from app.messaging.media import http_client
from app.messaging.providers import (
    ProviderAdapter,
    UnsupportedProvider,
    WebhookCheck,
    WebhookEvent,
    WebhookRefused,
    WebhookRequest,
    adapter_for,
)
from app.messaging.providers.aws_sms import (
    AccountUnavailable,
    AwsSmsAdapter,
    CertificateUnavailable,
    SnsPolicy,
    SubscriptionNotConfirmed,
    sns_base,
)

log = logging.getLogger("switchboard.messaging.webhooks")

# No provider posts anything near this (WeChat caps its XML at a few KB, Meta batches
# stay far below); the app-wide body limit stands behind it.
MAX_WEBHOOK_BYTES = 1_048_576
# A Meta post names at most a handful of accounts; more is not Meta.
MAX_ACCOUNTS = 50
TWIML_EMPTY = '<?xml version="1.0" encoding="UTF-8"?><Response/>'

ChannelType = Literal["sms", "whatsapp", "wechat", "messenger"]
Provider = Literal["twilio", "meta", "wechat", "sandbox", "aws"]
AccountId = Annotated[
    str,
    Path(
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}$",
        description="The channel's `provider_account_id` (Twilio AccountSid, WeChat AppID, "
        "Meta phone-number or page id, Amazon SNS topic name, sandbox account).",
    ),
]

router = APIRouter(prefix="/v1/webhooks", tags=["webhooks"])

_SUCCESS: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "Taken (or a replay, taken before), answered as the provider expects: "
        "empty TwiML for Twilio, `EVENT_RECEIVED` for Meta, `success` for WeChat, JSON "
        "counts for the sandbox.",
        "content": {
            "text/xml": {"schema": {"type": "string"}},
            "text/plain": {"schema": {"type": "string"}},
            "application/json": {"schema": {"type": "object"}},
        },
    },
    400: problem(
        "The body (or query) is not what the provider sends",
        example(
            400,
            "malformed-webhook",
            "body: NumMedia is 2 but MediaUrl1 is missing",
            field="body",
            title="Bad request",
        ),
    ),
    403: problem(
        "The signature does not verify, or its signed time is outside the allowed window",
        example(
            403,
            "signature-invalid",
            "The request's signature does not verify: X-Twilio-Signature does not match.",
        ),
        example(
            403,
            "stale-request",
            "The request's signed time is outside the allowed window: timestamp is outside "
            "the allowed window.",
        ),
    ),
    404: problem(
        "No enabled channel receives this provider account's webhooks",
        example(404, "webhook-not-found", "No channel receives webhooks here."),
    ),
    503: problem(
        "Amazon SNS: its signing certificate, subscription URL or STS (the account of the "
        "channel's key) did not answer (SNS retries)",
        example(
            503,
            "provider-unavailable",
            "The SNS signing certificate could not be fetched; try again later.",
            title="Service unavailable",
        ),
    ),
}
_HANDSHAKE: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The provider's challenge, echoed (Meta `hub.challenge`, WeChat `echostr`).",
        "content": {"text/plain": {"schema": {"type": "string"}}},
    },
    400: _SUCCESS[400],
    403: _SUCCESS[403],
    404: _SUCCESS[404],
}


# -- refusals -------------------------------------------------------------------------------


class _Unknown(NotFound):
    def __init__(self) -> None:
        # The same answer for every reason: never says whether the account exists.
        super().__init__("No channel receives webhooks here.", code="webhook-not-found")


def _refusal(refused: WebhookRefused, where: str) -> SwitchboardError:
    if refused.code == "stale":
        return SwitchboardError(
            f"The request's signed time is outside the allowed window: {refused.reason}.",
            status=403,
            code="stale-request",
            title="Forbidden",
        )
    if refused.code == "malformed":
        return SwitchboardError(
            f"{where}: {refused.reason}", status=400, code="malformed-webhook", field=where
        )
    return SwitchboardError(
        f"The request's signature does not verify: {refused.reason}.",
        status=403,
        code="signature-invalid",
        title="Forbidden",
    )


def _upstream(what: str) -> SwitchboardError:
    # 503: SNS retries 5xx answers, and the next attempt may get through.
    return SwitchboardError(
        f"{what}; try again later.",
        status=503,
        code="provider-unavailable",
        title="Service unavailable",
    )


def _refusal_outcome(refused: WebhookRefused) -> str:
    return {"stale": "stale-request", "malformed": "malformed"}.get(
        refused.code, "signature-invalid"
    )


# -- metrics and log ------------------------------------------------------------------------


def _counter(request: Request) -> Counter | None:
    counter: Counter | None = getattr(request.app.state, "webhook_metrics", None)
    if counter is None:
        metrics = getattr(request.app.state, "http_metrics", None)
        if metrics is None:
            return None
        counter = Counter(
            "switchboard_webhook_requests",
            "Provider webhook requests, by channel type, provider, outcome and tenant.",
            ("channel_type", "provider", "outcome", "tenant_id"),
            registry=metrics.registry,
        )
        request.app.state.webhook_metrics = counter
    return counter


def _record(
    request: Request,
    channel_type: str,
    provider: str,
    outcome: str,
    target: IngressChannel | None = None,
    detail: Outcome | None = None,
) -> None:
    tenant = str(target.scope.tenant_id) if target is not None else ""
    counter = _counter(request)
    if counter is not None:
        counter.labels(channel_type, provider, outcome, tenant).inc()
    extra: dict[str, Any] = {"channel_type": channel_type, "provider": provider, "outcome": outcome}
    if target is not None:
        extra |= {"tenant.id": tenant, "channel_id": str(target.channel.id)}
    if detail is not None:
        extra |= detail.counts()
    quiet = ("accepted", "replayed", "handshake", "subscribed")
    level = logging.INFO if outcome in quiet else logging.WARNING
    log.log(level, "webhook %s", outcome, extra=extra)


# -- the request ----------------------------------------------------------------------------


async def _body(request: Request) -> bytes:
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > MAX_WEBHOOK_BYTES:
            raise SwitchboardError(
                f"The request body exceeds {MAX_WEBHOOK_BYTES} bytes.",
                status=413,
                code="payload-too-large",
                title="Payload too large",
            )
    return bytes(data)


def public_url(settings: Settings, request: Request) -> str:
    """The URL the provider called, as it knows it: our public base URL, the path as
    sent (undecoded) and the query string. Never the Host header: a client picks it."""
    raw_path = request.scope.get("raw_path")
    path = raw_path.decode("latin-1") if isinstance(raw_path, bytes) else request.url.path
    query = request.scope.get("query_string", b"").decode("latin-1")
    return settings.public_url.rstrip("/") + path + (f"?{query}" if query else "")


def webhook_path(channel_type: str, provider: str, account_id: str) -> str:
    """Where a channel's provider posts (Twilio's status callbacks name it too)."""
    return f"/v1/webhooks/{channel_type}/{provider}/{account_id}"


def _adapter(channel_type: str, provider: str) -> ProviderAdapter:
    try:
        return adapter_for(channel_type, provider)
    except UnsupportedProvider:
        raise _Unknown() from None


def _sns_policy(settings: Settings) -> SnsPolicy:
    return SnsPolicy.of(settings.aws_sns_cert_host_pattern, settings.aws_sns_allow_http_cert)


def _sns_base(settings: Settings) -> str:
    return sns_base(settings.aws_sms_region, settings.aws_sms_endpoint_url)


def _check(target: IngressChannel, now: datetime, max_age: timedelta) -> WebhookCheck:
    return WebhookCheck(target.credentials, target.webhook_secret, now, max_age)


async def _target(
    request: Request, channel_type: str, provider: str, account_id: str
) -> IngressChannel | None:
    factory = request.app.state.session_factory
    async with factory() as session, session.begin():
        return await find_channel(session, app_cipher(request), channel_type, provider, account_id)


def _answer(provider: str, outcome: Outcome) -> Response:
    if provider == "twilio":
        return Response(TWIML_EMPTY, media_type="text/xml")
    if provider == "meta":
        return PlainTextResponse("EVENT_RECEIVED")
    if provider == "wechat":
        return PlainTextResponse("success")
    return JSONResponse(outcome.counts())


def _verified(
    request: Request,
    adapter: ProviderAdapter,
    req: WebhookRequest,
    where: tuple[str, str, str],
    target: IngressChannel,
    now: datetime,
    max_age: timedelta,
) -> list[WebhookEvent]:
    """The request's events for ``target``, once its signature verifies; refused (and
    counted) otherwise. ``where``: channel type, provider, account."""
    channel_type, provider, account = where
    try:
        adapter.verify(req, _check(target, now, max_age))
        return adapter.parse(
            req, account_id=account, credentials=target.credentials, received_at=now
        )
    except WebhookRefused as refused:
        _record(request, channel_type, provider, _refusal_outcome(refused), target)
        raise _refusal(refused, "body") from None


async def _apply(
    request: Request, target: IngressChannel, events: list[WebhookEvent], request_key: str | None
) -> Outcome:
    """``events`` written for ``target`` outside any open transaction (media fetched
    first)."""
    state = request.app.state
    return await apply(
        state.session_factory,
        state.settings,
        state.object_store,
        target,
        events,
        request_key=request_key,
    )


def _record_applied(
    request: Request, channel_type: str, provider: str, target: IngressChannel, outcome: Outcome
) -> None:
    outcome_name = "replayed" if outcome.replayed else "accepted"
    _record(request, channel_type, provider, outcome_name, target, outcome)


def _request_key(provider: str, req: WebhookRequest) -> str | None:
    """WeChat's request itself is taken once (its timestamp and nonce)."""
    if provider != "wechat":
        return None
    query = req.query
    return receipt_key("nonce", query.get("timestamp", ""), query.get("nonce", ""))


async def _ingress_one(
    request: Request,
    adapter: ProviderAdapter,
    req: WebhookRequest,
    channel_type: str,
    provider: str,
    account: str,
    now: datetime,
    max_age: timedelta,
) -> Response:
    """A request for one account (all but Meta's multi-number posts and SNS): the
    channel is found, the request verified and, unless something has to happen outside
    a transaction first (media to fetch, a WeChat replay to recognise), its events
    written in one transaction."""
    factory = request.app.state.session_factory
    outcome: Outcome | None = None
    async with factory() as session:
        async with session.begin():
            target = await find_channel(
                session, app_cipher(request), channel_type, provider, account
            )
            if target is None:
                _record(request, channel_type, provider, "not-found")
                raise _Unknown()
            tag_tenant(target.scope.tenant_id)
            where = (channel_type, provider, account)
            events = _verified(request, adapter, req, where, target, now, max_age)
            request_key = _request_key(provider, req)
            if not needs_prefetch(events, request_key):
                outcome = await apply_bound(session, request.app.state.object_store, target, events)
        await run_after_commit(session)
    if outcome is None:
        outcome = await _apply(request, target, events, request_key)
    _record_applied(request, channel_type, provider, target, outcome)
    return _answer(provider, outcome)


async def _ingress(
    request: Request, channel_type: str, provider: str, account_id: str | None
) -> Response:
    settings: Settings = request.app.state.settings
    adapter = _adapter(channel_type, provider)
    req = WebhookRequest(
        method="POST",
        url=public_url(settings, request),
        headers=dict(request.headers),
        body=await _body(request),
    )
    # Meta posts one URL per app, for all its numbers or pages: the payload names them.
    if provider == "meta" or account_id is None:
        accounts = adapter.accounts(req)[:MAX_ACCOUNTS]
        if not accounts:
            _record(request, channel_type, provider, "malformed")
            raise _refusal(WebhookRefused("malformed", "names no account"), "body")
    else:
        accounts = [account_id]
    now = utcnow()
    max_age = timedelta(seconds=settings.webhook_max_age_seconds)
    if len(accounts) == 1 and not isinstance(adapter, AwsSmsAdapter):
        return await _ingress_one(
            request, adapter, req, channel_type, provider, accounts[0], now, max_age
        )
    # Every channel named verifies before anything is written.
    verified: list[tuple[IngressChannel, list[WebhookEvent]]] = []
    for account in accounts:
        target = await _target(request, channel_type, provider, account)
        if target is None:
            continue
        tag_tenant(target.scope.tenant_id)
        try:
            if isinstance(adapter, AwsSmsAdapter):
                # The certificate the envelope names, fetched before verify (no await
                # between the two: the cache cannot lose it meanwhile).
                try:
                    await adapter.prepare(req, _sns_policy(settings), http_client(), now)
                except CertificateUnavailable:
                    _record(request, channel_type, provider, "certificate-unavailable", target)
                    raise _upstream("The SNS signing certificate could not be fetched") from None
            adapter.verify(req, _check(target, now, max_age))
            if isinstance(adapter, AwsSmsAdapter):
                # Signed by SNS, but for whose topic: it must be the channel's account.
                try:
                    await adapter.check_owner(req, target.credentials, _sns_base(settings))
                except AccountUnavailable:
                    _record(request, channel_type, provider, "account-unavailable", target)
                    raise _upstream("The channel's AWS account could not be checked") from None
            events = adapter.parse(
                req, account_id=account, credentials=target.credentials, received_at=now
            )
        except WebhookRefused as refused:
            _record(request, channel_type, provider, _refusal_outcome(refused), target)
            raise _refusal(refused, "body") from None
        verified.append((target, events))
    if not verified:
        _record(request, channel_type, provider, "not-found")
        raise _Unknown()
    if isinstance(adapter, AwsSmsAdapter):
        for target, _ in verified:
            try:
                confirmed = await adapter.confirm_subscription(
                    req, _sns_policy(settings), http_client()
                )
            except WebhookRefused as refused:
                _record(request, channel_type, provider, _refusal_outcome(refused), target)
                raise _refusal(refused, "body") from None
            except SubscriptionNotConfirmed:
                _record(request, channel_type, provider, "subscription-failed", target)
                raise _upstream("The SNS subscription could not be confirmed") from None
            if confirmed:
                _record(request, channel_type, provider, "subscribed", target)
                return JSONResponse({"subscription": "confirmed"})
    request_key = _request_key(provider, req)
    total = Outcome()
    for target, events in verified:
        outcome = await _apply(request, target, events, request_key)
        _record_applied(request, channel_type, provider, target, outcome)
        total.add(outcome)
    return _answer(provider, total)


# -- endpoints ------------------------------------------------------------------------------


@router.post(
    "/{channel_type}/meta",
    responses=_SUCCESS,
    response_class=Response,
    summary="Meta webhook (WhatsApp Cloud API, Messenger): one URL per app",
)
async def meta_webhook(channel_type: ChannelType, request: Request) -> Response:
    """Meta's signed posts (``X-Hub-Signature-256``). One post may carry several phone
    numbers or pages of the app: each is handled by the channel holding it, verified
    with that channel's app secret. Configure the callback URL as
    ``/v1/webhooks/{type}/meta/{account}`` so that Meta's subscription handshake (GET)
    can find the verify token; posts to either URL are read the same way."""
    return await _ingress(request, channel_type, "meta", None)


@router.post(
    "/{channel_type}/{provider}/{account_id}",
    responses=_SUCCESS,
    response_class=Response,
    summary="Provider webhook for one account (Twilio, WeChat, sandbox; Meta)",
)
async def provider_webhook(
    channel_type: ChannelType, provider: Provider, account_id: AccountId, request: Request
) -> Response:
    """A provider's signed post for the channel holding ``account_id``: customer
    messages and delivery receipts. Twilio: ``X-Twilio-Signature`` over this URL as
    configured at Twilio (``public_url`` + path + query). WeChat: ``signature``,
    ``timestamp`` and ``nonce`` in the query (and ``msg_signature`` in safe mode).
    Sandbox: ``X-Switchboard-Timestamp`` and ``X-Switchboard-Signature`` (HMAC-SHA256
    of ``"{timestamp}.{body}"`` under the channel's webhook secret). Amazon SNS
    (``sms/aws/{topic name}``): the envelope's RSA signature, checked with SNS's
    certificate; its TopicArn must name the channel's topic."""
    return await _ingress(request, channel_type, provider, account_id)


@router.get(
    "/{channel_type}/{provider}/{account_id}",
    responses=_HANDSHAKE,
    response_class=PlainTextResponse,
    summary="Provider subscription handshake (Meta hub.challenge, WeChat echostr)",
)
async def handshake(
    channel_type: ChannelType, provider: Provider, account_id: AccountId, request: Request
) -> PlainTextResponse:
    """Meta: ``hub.verify_token`` must be the channel's webhook secret; answers
    ``hub.challenge``. WeChat: the signed query; answers ``echostr``."""
    settings: Settings = request.app.state.settings
    adapter = _adapter(channel_type, provider)
    target = await _target(request, channel_type, provider, account_id)
    if target is None:
        _record(request, channel_type, provider, "not-found")
        raise _Unknown()
    tag_tenant(target.scope.tenant_id)
    req = WebhookRequest(
        method="GET", url=public_url(settings, request), headers=dict(request.headers)
    )
    try:
        max_age = timedelta(seconds=settings.webhook_max_age_seconds)
        answer = adapter.handshake(req, _check(target, utcnow(), max_age))
    except WebhookRefused as refused:
        _record(request, channel_type, provider, _refusal_outcome(refused), target)
        raise _refusal(refused, "query") from None
    if (key := _request_key(provider, req)) is not None:
        # WeChat signs a handshake the way it signs a plaintext push (token, timestamp,
        # nonce; not the body): take its nonce, so the signed query cannot then carry a
        # POST of someone else's making. Echoing a replayed handshake again is harmless.
        await take_request(request.app.state.session_factory, target, key)
    _record(request, channel_type, provider, "handshake", target)
    return PlainTextResponse(answer)
