"""Channel request and response bodies: a discriminated union on ``type``.

Secrets are write-only: ``credentials`` values are ``SecretStr`` (never echoed, masked in
any repr), and the webhook secret appears only in ``*Created`` bodies. The per-type
``config`` objects these bodies carry live in ``app.channels.config_schemas``.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Annotated, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr, StrictBool

from app.channels.config_schemas import (
    FLOW_HELP,
    QUEUE_HELP,
    TEMPLATES_HELP,
    AllowedOrigins,
    EmailConfig,
    EmailConfigRead,
    Greeting,
    MessengerConfig,
    PhoneNumberIds,
    ProviderConfigRead,
    ReplyFrom,
    SmsConfig,
    SmsConfigRead,
    ThemeColour,
    VoiceConfig,
    VoiceConfigRead,
    WebchatConfig,
    WebchatConfigRead,
    WechatConfig,
    WhatsappConfig,
    WhatsappTemplates,
)
from app.channels.validation import ChannelType, check_secret_text
from app.core.schemas import Name

# -- credentials --------------------------------------------------------------------------


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


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


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
