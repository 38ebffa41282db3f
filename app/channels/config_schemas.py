"""The per-type ``config`` objects of a channel: what a create accepts and a read returns.

One config model per channel type (voice numbers, the web chat widget, the email address,
the messaging provider account), the field types they share with PATCH bodies, and the
WhatsApp ``templates`` declaration of Twilio senders. The channel bodies that carry them
live in ``app.channels.schemas``.
"""

from __future__ import annotations

import uuid
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    EmailStr,
    Field,
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
    check_greeting,
    check_local_part,
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


# -- WhatsApp templates -------------------------------------------------------------------


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


# -- per-type configuration (read) --------------------------------------------------------


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
