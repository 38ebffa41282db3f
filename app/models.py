"""Imports every table so that the metadata (and Alembic) sees them all."""

from app.agents.models import Agent, AgentInvitation, AgentSkill
from app.api_keys.models import ApiKey
from app.audit.models import AuditEvent
from app.auth.models import EmailVerification, LoginFailure, RefreshToken
from app.business_hours.models import BusinessHours
from app.channels.models import Channel, ChannelAddress, ChannelNumber
from app.conversations.models import (
    Attachment,
    Conversation,
    ConversationEvent,
    ConversationParticipant,
    Message,
    OutboundWork,
)
from app.customers.models import (
    Customer,
    CustomerChange,
    CustomerConsent,
    CustomerIdentity,
    TimelineEvent,
)
from app.flows.models import Flow, FlowVersion
from app.idempotency.models import IdempotencyKey
from app.mail.models import OutboundMail
from app.messaging.models import WebhookReceipt
from app.phone_numbers.models import NumberClaim, PhoneNumber
from app.proactive.models import ProactiveDecision, ProactiveRule
from app.queues.models import Queue, QueueSkill
from app.routing.models import (
    AgentPresence,
    Contact,
    OutboxEvent,
    Reservation,
    RouterWorker,
    RoutingEvent,
    RoutingShard,
    RoutingWork,
)
from app.routing_profiles.models import RoutingProfile, RoutingProfileQueue
from app.skills.models import Skill
from app.sso.models import SsoLoginState, SsoOidcConfig
from app.tenants.models import Tenant
from app.usage.models import UsageEvent
from app.users.models import LoginEmail, User
from app.webchat.models import AbuseCounter, PageView

__all__ = [
    "AbuseCounter",
    "Agent",
    "AgentInvitation",
    "AgentPresence",
    "AgentSkill",
    "ApiKey",
    "Attachment",
    "AuditEvent",
    "BusinessHours",
    "Channel",
    "ChannelAddress",
    "ChannelNumber",
    "Contact",
    "Conversation",
    "ConversationEvent",
    "ConversationParticipant",
    "Customer",
    "CustomerChange",
    "CustomerConsent",
    "CustomerIdentity",
    "EmailVerification",
    "Flow",
    "FlowVersion",
    "IdempotencyKey",
    "LoginEmail",
    "LoginFailure",
    "Message",
    "NumberClaim",
    "OutboundMail",
    "OutboundWork",
    "OutboxEvent",
    "PageView",
    "PhoneNumber",
    "ProactiveDecision",
    "ProactiveRule",
    "Queue",
    "QueueSkill",
    "RefreshToken",
    "Reservation",
    "RouterWorker",
    "RoutingEvent",
    "RoutingProfile",
    "RoutingProfileQueue",
    "RoutingShard",
    "RoutingWork",
    "Skill",
    "SsoLoginState",
    "SsoOidcConfig",
    "Tenant",
    "TimelineEvent",
    "UsageEvent",
    "User",
    "WebhookReceipt",
]
