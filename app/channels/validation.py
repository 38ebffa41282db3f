"""Value rules for channel settings: web origins, email local parts, colours, provider
accounts, the credential fields each provider takes, the routing channel each type
feeds, and the WhatsApp templates a Twilio channel declares.

Each validator raises ``ValueError`` with a reason a person can act on; pydantic puts
the field path in front of it (``body.config.allowed_origins.2``).
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Literal, Protocol, TypeVar, cast

from app.core.schemas import check_text
from app.core.validation import fail_at

_T = TypeVar("_T")

ChannelType = Literal["voice", "webchat", "email", "sms", "whatsapp", "wechat", "messenger"]
CHANNEL_TYPES: tuple[str, ...] = (
    "voice",
    "webchat",
    "email",
    "sms",
    "whatsapp",
    "wechat",
    "messenger",
)
MESSAGING_TYPES = frozenset({"sms", "whatsapp", "wechat", "messenger"})
NUMBERED_TYPES = frozenset({"voice", "sms"})
# The routing channel (a queue's ``channels``) each conversational channel type feeds.
# Voice is absent: calls reach queues through phone numbers and contact flows.
ROUTING_CHANNEL: dict[str, str] = {
    "webchat": "chat",
    "email": "email",
    "sms": "sms",
    "whatsapp": "messaging",
    "wechat": "messaging",
    "messenger": "messaging",
}


# -- web origins --------------------------------------------------------------------------

_ORIGIN = re.compile(
    r"^(?P<scheme>[a-z][a-z0-9+.-]*)://(?P<host>\[[^\]]*\]|[^/:?#\[\]]*)"
    r"(?::(?P<port>[^/?#]*))?(?P<rest>.*)$",
    re.DOTALL,
)
_LABEL = re.compile(r"^(?!-)[a-z0-9-]{1,63}(?<!-)$")
_LOOPBACK_HTTP = frozenset({"localhost", "127.0.0.1"})
_DEFAULT_PORT = {"https": 443, "http": 80}
ORIGIN_HELP = (
    "an origin is scheme://host[:port] with no path, e.g. https://www.example.com or "
    "https://*.example.com"
)


def _check_hostname(host: str) -> None:
    if not host:
        raise ValueError(f"has no host; {ORIGIN_HELP}")
    if not host.isascii():
        raise ValueError("host must be ASCII; write an internationalised name in its xn-- form")
    if len(host) > 253:
        raise ValueError("host is longer than 253 characters")
    labels = host.split(".")
    if any(not _LABEL.match(label) for label in labels):
        raise ValueError(
            "host is not a valid name (letters, digits and dashes in dot-separated labels)"
        )
    if labels[-1].isdigit():
        raise ValueError("host is not a valid name or IPv4 address")


def normalise_origin(value: str) -> str:
    """A browser origin as the widget will see it in the Origin header: lower case,
    default port dropped. https only, except plain http for localhost and 127.0.0.1; a
    wildcard only as a leading ``*.`` over a name of two or more labels."""
    if any(c.isspace() or ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValueError("must not contain spaces or control characters")
    lowered = value.lower()
    m = _ORIGIN.match(lowered)
    if m is None:
        raise ValueError(f"is not an origin; {ORIGIN_HELP}")
    scheme, host, port, rest = m["scheme"], m["host"], m["port"], m["rest"]
    if "@" in host:
        raise ValueError("must not contain user information (user@)")
    if rest:
        raise ValueError(
            f"must not have a path, query or fragment (not even a trailing '/'); {ORIGIN_HELP}"
        )
    if scheme not in _DEFAULT_PORT:
        raise ValueError("scheme must be https (or http for localhost and 127.0.0.1)")
    if host.startswith("["):
        raise ValueError("IPv6 address origins are not supported")
    wildcard = host.startswith("*.")
    name = host[2:] if wildcard else host
    if "*" in name:
        raise ValueError("a wildcard is allowed only as a leading '*.' (https://*.example.com)")
    is_ip = bool(name) and all(part.isdigit() for part in name.split("."))
    if is_ip:
        try:
            ipaddress.IPv4Address(name)
        except ValueError:
            raise ValueError("host is not a valid IPv4 address") from None
        if wildcard:
            raise ValueError("a wildcard cannot cover an IP address")
    else:
        _check_hostname(name)
        if wildcard and name.count(".") < 1:
            raise ValueError("a wildcard must cover a name of two or more labels (*.example.com)")
        if not wildcard and "." not in name and name != "localhost":
            raise ValueError("host must be a fully qualified name (www.example.com)")
    if scheme == "http" and host not in _LOOPBACK_HTTP:
        raise ValueError("must use https (plain http only for localhost and 127.0.0.1)")
    port_part = ""
    if port is not None:
        if not port.isdigit() or not 1 <= int(port) <= 65535 or len(port) > 5:
            raise ValueError("port must be a number from 1 to 65535")
        if int(port) != _DEFAULT_PORT[scheme]:
            port_part = f":{int(port)}"
    return f"{scheme}://{host}{port_part}"


def unique_origins(origins: list[str]) -> list[str]:
    seen: set[str] = set()
    for origin in origins:
        if origin in seen:
            raise ValueError(f"lists {origin} twice")
        seen.add(origin)
    return origins


# -- email --------------------------------------------------------------------------------

_LOCAL_PART = re.compile(r"^[a-z0-9.-]{1,64}$")
# Mailboxes the operator of a shared domain must keep (RFC 2142 and friends).
RESERVED_LOCAL_PARTS = frozenset(
    {
        "abuse",
        "hostmaster",
        "mailer-daemon",
        "noc",
        "postmaster",
        "root",
        "security",
        "webmaster",
    }
)


def check_local_part(value: str) -> str:
    if not _LOCAL_PART.match(value):
        raise ValueError("must be 1-64 lowercase letters, digits, dots and dashes")
    if value.startswith(".") or value.endswith("."):
        raise ValueError("must not start or end with a dot")
    if ".." in value:
        raise ValueError("must not contain two dots in a row")
    if value in RESERVED_LOCAL_PARTS:
        raise ValueError("is reserved for the platform's own mail")
    return value


# -- text and colours ---------------------------------------------------------------------


def check_greeting(value: str) -> str:
    """Free text shown in the widget: line breaks allowed, other control characters not."""
    return check_text(
        value,
        allowed_controls="\n\t",
        whitespace="strip",
        control_reason="must not contain control characters other than line breaks",
        blank_reason="must not be blank (send null to remove the greeting)",
    )


_COLOUR = re.compile(r"^#(?:[0-9a-fA-F]{3}|[0-9a-fA-F]{6})$")


def normalise_colour(value: str) -> str:
    if not _COLOUR.match(value):
        raise ValueError("must be a hex colour, #rgb or #rrggbb")
    value = value.lower()
    if len(value) == 4:
        value = "#" + "".join(c * 2 for c in value[1:])
    return value


def check_secret_text(value: str) -> str:
    return check_text(value, allow_blank=True)


# -- providers ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Provider:
    required: tuple[str, ...]
    optional: tuple[str, ...] = ()

    @property
    def fields(self) -> tuple[str, ...]:
        return self.required + self.optional


# The credential fields each provider's adapter reads (names are public, values are not).
PROVIDERS: dict[str, dict[str, Provider]] = {
    "sms": {
        "twilio": Provider(("auth_token",)),
        "aws": Provider(("access_key_id", "secret_access_key")),
        "sandbox": Provider((), ("api_key",)),
    },
    "whatsapp": {
        "meta": Provider(("access_token", "app_secret")),
        "twilio": Provider(("auth_token",)),
    },
    "wechat": {"wechat": Provider(("app_secret", "token"), ("encoding_aes_key",))},
    "messenger": {"meta": Provider(("page_access_token", "app_secret"))},
}


def credentials_help(channel_type: str) -> str:
    return "; ".join(
        f"{name}: {', '.join(p.required) or 'none required'}"
        + (f" (optional: {', '.join(p.optional)})" if p.optional else "")
        for name, p in PROVIDERS[channel_type].items()
    )


# -- WhatsApp templates (Twilio) -----------------------------------------------------------

# A template as a reply names it (``app.conversations.agent_schemas.MessageTemplate``).
TEMPLATE_NAME = r"^[a-z0-9_]+$"
TEMPLATE_LANGUAGE = r"^[a-z]{2,3}(_[A-Z]{2}|_[0-9]{3})?$"
# Twilio's Content SID of an approved content template.
CONTENT_SID = r"^HX[0-9a-f]{32}$"
# Meta allows no more body variables in a template than a reply may fill.
MAX_TEMPLATE_PARAMETERS = 20
MAX_TEMPLATES = 200


class _Declared(Protocol):
    name: str
    language: str
    content_sid: str


def unique_templates(templates: list[_T]) -> list[_T]:
    """A template (name and language) is declared once, and a Content SID names one
    template: the reply's name and language must find exactly one Content SID."""
    seen: dict[tuple[str, str], int] = {}
    sids: dict[str, int] = {}
    for i, item in enumerate(templates):
        declared = cast(_Declared, item)
        key = (declared.name, declared.language)
        if key in seen:
            fail_at(
                (i, "language"),
                f"declares {declared.name} ({declared.language}) again (see item {seen[key]})",
            )
        if declared.content_sid in sids:
            fail_at(
                (i, "content_sid"),
                f"is already the Content SID of item {sids[declared.content_sid]}",
            )
        seen[key] = i
        sids[declared.content_sid] = i
    return templates
