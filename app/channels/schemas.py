"""Channel request and response bodies: a discriminated union on ``type``.

Secrets are write-only: ``credentials`` values are ``SecretStr`` (never echoed, masked in
any repr), and the webhook secret appears only in ``*Created`` bodies.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
    SecretStr,
    StrictBool,
    StrictInt,
    model_validator,
)

from app.channels.validation import (
    CONTENT_SID,
    MAX_TEMPLATE_PARAMETERS,
    MAX_TEMPLATES,
    ORIGIN_HELP,
    TEMPLATE_LANGUAGE,
    TEMPLATE_NAME,
    ChannelType,
    check_greeting,
    check_local_part,
    check_secret_text,
    normalise_colour,
    normalise_origin,
    unique_origins,
    unique_templates,
)
from app.core.schemas import Name
from app.core.validation import fail_at

# -- field types --------------------------------------------------------------------------


def _unique_ids(ids: list[uuid.UUID]) -> list[uuid.UUID]:
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise ValueError(f"lists {dup} twice")
    return ids


PhoneNumberIds = Annotated[
    list[uuid.UUID],
    Field(
        max_length=100,
        description="Active phone numbers of this tenant (`/v1/phone-numbers`). A number "
        "serves at most one channel of each type.",
    ),
    AfterValidator(_unique_ids),
]
Origin = Annotated[str, Field(min_length=1, max_length=300, examples=["https://www.example.com"])]
AllowedOrigins = Annotated[
    list[Annotated[Origin, AfterValidator(normalise_origin)]],
    Field(
        min_length=1,
        max_length=50,
        description=f"Pages that may embed the widget: {ORIGIN_HELP}. https only, except "
        "http://localhost and http://127.0.0.1 for development. Stored lower case, "
        "default port dropped.",
    ),
    AfterValidator(unique_origins),
]
Greeting = Annotated[
    str,
    Field(min_length=1, max_length=500, description="Shown when a visitor opens the widget."),
    AfterValidator(check_greeting),
]
ThemeColour = Annotated[
    str,
    Field(
        min_length=4,
        max_length=7,
        pattern=r"^#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})$",
        description="The widget's accent colour, #rgb or #rrggbb (stored as #rrggbb).",
    ),
    AfterValidator(normalise_colour),
]
LocalPart = Annotated[
    str,
    Field(
        min_length=1,
        max_length=64,
        pattern=r"^[a-z0-9.-]{1,64}$",
        description="The part before the @ of the inbound address: lowercase letters, "
        "digits, dots and dashes, not starting or ending with a dot. Unique across the "
        "platform (the domain is shared).",
        examples=["support"],
    ),
    AfterValidator(check_local_part),
]
ReplyFrom = Annotated[
    EmailStr,
    Field(
        max_length=254,
        description="The From address of replies. Default: the inbound address.",
        examples=["support@acme.example"],
    ),
]
ProviderAccountId = Annotated[
    str,
    Field(
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._@+-]{0,127}$",
        description="The account at the provider that inbound webhooks name (Twilio "
        "account SID, Meta page or phone-number id, WeChat AppID...). Unique across the "
        "platform per channel type and provider: it routes webhooks to this channel.",
    ),
]


def _check_credential(value: SecretStr) -> SecretStr:
    check_secret_text(value.get_secret_value())
    return value


CredentialValue = Annotated[
    SecretStr, Field(min_length=1, max_length=4096), AfterValidator(_check_credential)
]
Credentials = Annotated[
    dict[str, CredentialValue],
    Field(
        min_length=1,
        max_length=10,
        description="Write-only provider credentials, encrypted at rest and never returned "
        "(reads show `credentials_set` and `credential_fields`). Fields per provider - "
        "sms: twilio auth_token; aws access_key_id, secret_access_key; sandbox none "
        "(optional api_key). whatsapp: meta access_token, app_secret; twilio auth_token. "
        "wechat: wechat app_secret, token (optional encoding_aes_key). messenger: meta "
        "page_access_token, app_secret. Replacing credentials replaces the whole object.",
    ),
]


class WhatsappTemplate(BaseModel):
    """A WhatsApp template approved for the channel's sender at Twilio (Content
    Template Builder): what an agent's reply names (``name``, ``language``) and what
    Twilio sends (``content_sid``, with the reply's parameters as its variables)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(
        min_length=1,
        max_length=512,
        pattern=TEMPLATE_NAME,
        description="The name agents send it by (lowercase letters, digits, _), as in "
        "a reply's template.name",
        examples=["order_update"],
    )
    language: str = Field(
        min_length=2,
        max_length=16,
        pattern=TEMPLATE_LANGUAGE,
        description="The approved translation's language code (en, en_US, pt_BR)",
        examples=["en_US"],
    )
    content_sid: str = Field(
        min_length=34,
        max_length=34,
        pattern=CONTENT_SID,
        description="The Content SID Twilio gave the approved template: HX and 32 "
        "lowercase hex digits",
        examples=["HX0123456789abcdef0123456789abcdef"],
    )
    parameter_count: StrictInt = Field(
        default=0,
        ge=0,
        le=MAX_TEMPLATE_PARAMETERS,
        description="How many variables ({{1}}, {{2}}...) its body has: a reply gives "
        "exactly this many parameters",
    )


TEMPLATES_ONLY_TWILIO = (
    "applies to WhatsApp channels through Twilio only (Meta checks a template against "
    "WhatsApp Manager when it is sent)"
)
TEMPLATES_HELP = (
    "whatsapp through twilio only: the approved templates agents may send (after the "
    "24-hour service window too), each with its Content SID; a reply naming another "
    "template is refused. Meta channels declare none: Meta checks a template against "
    "WhatsApp Manager when it is sent."
)
WhatsappTemplates = Annotated[
    list[WhatsappTemplate],
    Field(max_length=MAX_TEMPLATES, description=TEMPLATES_HELP),
    AfterValidator(unique_templates),
]


# -- routing target -----------------------------------------------------------------------

QUEUE_HELP = (
    "The queue this channel's inbound conversations wait in. It must take the channel's "
    "routing channel (webchat: chat; email: email; sms: sms; whatsapp, wechat, messenger: "
    "messaging). Give queue_id or flow_id, not both; with neither the channel opens no "
    "conversations yet."
)
FLOW_HELP = (
    "A published contact flow (`/v1/flows`) this channel's inbound conversations run "
    "first. Give queue_id or flow_id, not both."
)


def _queue_id() -> Any:
    return Field(default=None, description=QUEUE_HELP)


def _flow_id() -> Any:
    return Field(default=None, description=FLOW_HELP)


# -- per-type configuration (create) ------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class VoiceConfig(_Strict):
    phone_number_ids: PhoneNumberIds = Field(default_factory=list)


class WebchatConfig(_Strict):
    allowed_origins: AllowedOrigins
    greeting: Greeting | None = None
    theme: ThemeColour | None = None
    queue_id: uuid.UUID | None = _queue_id()
    flow_id: uuid.UUID | None = _flow_id()


class EmailConfig(_Strict):
    local_part: LocalPart
    reply_from: ReplyFrom | None = None
    display_name: Name | None = Field(
        default=None, description="The display name on replies (Acme Support)."
    )
    queue_id: uuid.UUID | None = _queue_id()
    flow_id: uuid.UUID | None = _flow_id()


class SmsConfig(_Strict):
    provider: Literal["twilio", "aws", "sandbox"]
    provider_account_id: ProviderAccountId
    phone_number_ids: PhoneNumberIds = Field(default_factory=list)
    queue_id: uuid.UUID | None = _queue_id()
    flow_id: uuid.UUID | None = _flow_id()


class WhatsappConfig(_Strict):
    provider: Literal["meta", "twilio"]
    provider_account_id: ProviderAccountId
    templates: WhatsappTemplates | None = None
    queue_id: uuid.UUID | None = _queue_id()
    flow_id: uuid.UUID | None = _flow_id()

    @model_validator(mode="after")
    def _templates_through_twilio(self) -> WhatsappConfig:
        self.templates = self.templates or None  # [] declares none, as null does
        if self.templates is not None and self.provider != "twilio":
            fail_at(("templates",), TEMPLATES_ONLY_TWILIO)
        return self


class WechatConfig(_Strict):
    provider: Literal["wechat"] = "wechat"
    provider_account_id: ProviderAccountId
    queue_id: uuid.UUID | None = _queue_id()
    flow_id: uuid.UUID | None = _flow_id()


class MessengerConfig(_Strict):
    provider: Literal["meta"] = "meta"
    provider_account_id: ProviderAccountId
    queue_id: uuid.UUID | None = _queue_id()
    flow_id: uuid.UUID | None = _flow_id()


# -- create -------------------------------------------------------------------------------


class _CreateBase(_Strict):
    name: Name
    enabled: StrictBool = True


class VoiceChannelCreate(_CreateBase):
    type: Literal["voice"]
    config: VoiceConfig = Field(default_factory=VoiceConfig)


class WebchatChannelCreate(_CreateBase):
    type: Literal["webchat"]
    config: WebchatConfig


class EmailChannelCreate(_CreateBase):
    type: Literal["email"]
    config: EmailConfig


class SmsChannelCreate(_CreateBase):
    type: Literal["sms"]
    config: SmsConfig
    credentials: Credentials | None = Field(
        default=None, description="Required except for the sandbox provider."
    )


class WhatsappChannelCreate(_CreateBase):
    type: Literal["whatsapp"]
    config: WhatsappConfig
    credentials: Credentials


class WechatChannelCreate(_CreateBase):
    type: Literal["wechat"]
    config: WechatConfig
    credentials: Credentials


class MessengerChannelCreate(_CreateBase):
    type: Literal["messenger"]
    config: MessengerConfig
    credentials: Credentials


ChannelCreate = Annotated[
    VoiceChannelCreate
    | WebchatChannelCreate
    | EmailChannelCreate
    | SmsChannelCreate
    | WhatsappChannelCreate
    | WechatChannelCreate
    | MessengerChannelCreate,
    Field(discriminator="type"),
]
MessagingCreate = (
    SmsChannelCreate | WhatsappChannelCreate | WechatChannelCreate | MessengerChannelCreate
)

CREATE_EXAMPLES = {
    "voice": {
        "summary": "Voice: the numbers it answers",
        "value": {
            "type": "voice",
            "name": "Main line",
            "config": {"phone_number_ids": ["0196b0f2-6f0e-7c3a-9a51-2f1d3c4b5a60"]},
        },
    },
    "webchat": {
        "summary": "Web chat widget",
        "value": {
            "type": "webchat",
            "name": "Website chat",
            "config": {
                "allowed_origins": ["https://www.acme.example", "https://*.acme.example"],
                "greeting": "Hi! How can we help?",
                "theme": "#0055ff",
                "queue_id": "0196b0f2-5c1d-7e4f-8a9b-0c1d2e3f4a5b",
            },
        },
    },
    "email": {
        "summary": "Email: an inbound address under the platform's domain",
        "value": {
            "type": "email",
            "name": "Support email",
            "config": {
                "local_part": "acme-support",
                "reply_from": "support@acme.example",
                "display_name": "Acme Support",
            },
        },
    },
    "sms": {
        "summary": "SMS through Twilio",
        "value": {
            "type": "sms",
            "name": "Text us",
            "config": {
                "provider": "twilio",
                "provider_account_id": "AC0123456789abcdef0123456789abcdef",
                "phone_number_ids": [],
            },
            "credentials": {"auth_token": "your-twilio-auth-token"},
        },
    },
    "whatsapp": {
        "summary": "WhatsApp Business through Meta",
        "value": {
            "type": "whatsapp",
            "name": "WhatsApp",
            "config": {"provider": "meta", "provider_account_id": "109876543210987"},
            "credentials": {"access_token": "EAAG...", "app_secret": "0123abcd..."},
        },
    },
    "wechat": {
        "summary": "WeChat official account",
        "value": {
            "type": "wechat",
            "name": "WeChat",
            "config": {"provider": "wechat", "provider_account_id": "wx1234567890abcdef"},
            "credentials": {"app_secret": "...", "token": "..."},
        },
    },
    "messenger": {
        "summary": "Facebook Messenger page",
        "value": {
            "type": "messenger",
            "name": "Messenger",
            "config": {"provider": "meta", "provider_account_id": "104455667788990"},
            "credentials": {"page_access_token": "EAAG...", "app_secret": "0123abcd..."},
        },
    },
}


# -- update -------------------------------------------------------------------------------


class ChannelConfigUpdate(_Strict):
    """The settings a PATCH may change; each applies to some channel types only
    (another type answers 422 naming the field). The inbound address, provider and
    provider account are fixed: create a new channel to change them."""

    phone_number_ids: PhoneNumberIds | None = Field(
        default=None, description="voice, sms: replaces the set of numbers."
    )
    allowed_origins: AllowedOrigins | None = Field(default=None, description="webchat")
    greeting: Greeting | None = Field(default=None, description="webchat; null removes it")
    theme: ThemeColour | None = Field(default=None, description="webchat; null removes it")
    reply_from: ReplyFrom | None = Field(
        default=None, description="email; null resets it to the inbound address"
    )
    display_name: Name | None = Field(default=None, description="email; null removes it")
    templates: WhatsappTemplates | None = Field(
        default=None,
        description=TEMPLATES_HELP + " Replaces the whole list; null or [] removes them.",
    )
    queue_id: uuid.UUID | None = Field(
        default=None,
        description="webchat, email, sms, whatsapp, wechat, messenger: "
        + QUEUE_HELP
        + " null: no queue.",
    )
    flow_id: uuid.UUID | None = Field(
        default=None,
        description="webchat, email, sms, whatsapp, wechat, messenger: "
        + FLOW_HELP
        + " null: no flow. To switch from one to the other, send the new one and null "
        "for the old in the same change.",
    )


class ChannelUpdate(_Strict):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"name": "Website chat (EU)", "config": {"greeting": "Hallo!"}},
                {"config": {"queue_id": "0196b0f2-5c1d-7e4f-8a9b-0c1d2e3f4a5b", "flow_id": None}},
                {"enabled": False},
                {"credentials": {"auth_token": "the-new-token"}},
            ]
        },
    )

    type: ChannelType | None = Field(
        default=None, description="Cannot change; if sent it must be the channel's type."
    )
    name: Name | None = None
    enabled: StrictBool | None = None
    config: ChannelConfigUpdate | None = None
    credentials: Credentials | None = Field(
        default=None,
        description="sms, whatsapp, wechat, messenger: replaces the stored credentials.",
    )


# -- read ---------------------------------------------------------------------------------


class VoiceConfigRead(BaseModel):
    phone_number_ids: list[uuid.UUID]


class WebchatConfigRead(BaseModel):
    widget_key: str = Field(
        description="Public key the embedded widget sends; rotate it with "
        "POST /v1/channels/{id}/rotate-widget-key."
    )
    allowed_origins: list[str]
    greeting: str | None
    theme: str | None
    queue_id: uuid.UUID | None
    flow_id: uuid.UUID | None


class EmailConfigRead(BaseModel):
    local_part: str
    address: str = Field(description="The inbound address customers write to.")
    reply_from: str
    display_name: str | None
    queue_id: uuid.UUID | None
    flow_id: uuid.UUID | None


class SmsConfigRead(BaseModel):
    provider: str
    provider_account_id: str
    phone_number_ids: list[uuid.UUID]
    queue_id: uuid.UUID | None
    flow_id: uuid.UUID | None


class ProviderConfigRead(BaseModel):
    provider: str
    provider_account_id: str
    templates: list[WhatsappTemplate] | None = Field(
        default=None, description="whatsapp through twilio: the declared templates"
    )
    queue_id: uuid.UUID | None
    flow_id: uuid.UUID | None


class _ReadBase(BaseModel):
    id: uuid.UUID
    name: str
    enabled: bool
    version: int
    created_at: datetime
    updated_at: datetime


class _MessagingRead(_ReadBase):
    credentials_set: bool = Field(description="Credential values are never returned.")
    credential_fields: list[str] = Field(description="The names of the stored credentials.")


class VoiceChannelRead(_ReadBase):
    type: Literal["voice"]
    config: VoiceConfigRead


class WebchatChannelRead(_ReadBase):
    type: Literal["webchat"]
    config: WebchatConfigRead


class EmailChannelRead(_ReadBase):
    type: Literal["email"]
    config: EmailConfigRead


class SmsChannelRead(_MessagingRead):
    type: Literal["sms"]
    config: SmsConfigRead


class WhatsappChannelRead(_MessagingRead):
    type: Literal["whatsapp"]
    config: ProviderConfigRead


class WechatChannelRead(_MessagingRead):
    type: Literal["wechat"]
    config: ProviderConfigRead


class MessengerChannelRead(_MessagingRead):
    type: Literal["messenger"]
    config: ProviderConfigRead


ChannelRead = Annotated[
    VoiceChannelRead
    | WebchatChannelRead
    | EmailChannelRead
    | SmsChannelRead
    | WhatsappChannelRead
    | WechatChannelRead
    | MessengerChannelRead,
    Field(discriminator="type"),
]

_SHOWN_ONCE = (
    "Shown once, here: sign-check inbound webhooks with it. Null in an Idempotency-Key "
    "replay (the replay record does not keep secrets); rotate to get a new one."
)


class SmsChannelCreated(SmsChannelRead):
    webhook_secret: str | None = Field(description=_SHOWN_ONCE)


class WhatsappChannelCreated(WhatsappChannelRead):
    webhook_secret: str | None = Field(description=_SHOWN_ONCE)


class WechatChannelCreated(WechatChannelRead):
    webhook_secret: str | None = Field(description=_SHOWN_ONCE)


class MessengerChannelCreated(MessengerChannelRead):
    webhook_secret: str | None = Field(description=_SHOWN_ONCE)


ChannelCreated = Annotated[
    VoiceChannelRead
    | WebchatChannelRead
    | EmailChannelRead
    | SmsChannelCreated
    | WhatsappChannelCreated
    | WechatChannelCreated
    | MessengerChannelCreated,
    Field(discriminator="type"),
]
WebhookSecretIssued = Annotated[
    SmsChannelCreated | WhatsappChannelCreated | WechatChannelCreated | MessengerChannelCreated,
    Field(discriminator="type"),
]


class ChannelPage(BaseModel):
    items: list[ChannelRead]
    next_cursor: str | None = None
