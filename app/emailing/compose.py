"""Agent replies as MIME messages that thread in the customer's mail client."""

from __future__ import annotations

import email.policy
import re
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime

from app.emailing.parse import message_ids, normalize_message_id

MAX_REFERENCES = 20
# "Re:" and its translations (Aw, Sv, Antw...), possibly counted ("Re[2]:"), repeated.
_REPLY_PREFIX = re.compile(
    r"^\s*(?:(?:re|aw|sv|antw|ref|vs|odp)\s*(?:\[\d+\]|\(\d+\))?\s*:\s*)+", re.I
)
_ADDR = re.compile(r"^[A-Za-z0-9!#$%&'*+/=?^_`{|}~.-]{1,64}@[^\s@<>()\[\],;:\"\\]{1,253}$")
# CRLF on the wire, lines folded at 78: what SMTP servers and SES expect.
POLICY = email.policy.SMTP


class ComposeError(ValueError):
    """An address or value that cannot go into a mail header."""


def reply_subject(subject: str | None) -> str:
    """One "Re: " in front of the original subject, never "Re: Re:"."""
    base = _REPLY_PREFIX.sub("", _one_line(subject or "")).strip()
    return f"Re: {base}" if base else "Re: (no subject)"


def thread_references(references: Sequence[str], in_reply_to: str | None) -> list[str]:
    """References of a reply: the previous chain plus the message answered, without
    repeats, at most MAX_REFERENCES: the thread's root and the newest ones."""
    chain = message_ids(" ".join([*references, in_reply_to or ""]), limit=10_000)
    if len(chain) > MAX_REFERENCES:
        chain = [chain[0], *chain[-(MAX_REFERENCES - 1) :]]
    return chain


# Every character str.splitlines() breaks at (the email package refuses them all in a
# header: VT, FF, FS, GS, RS, NEL, LINE and PARAGRAPH SEPARATOR besides CR and LF) and
# the other control characters.
_NOT_ONE_LINE = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029]+")


def _one_line(value: str) -> str:
    return _NOT_ONE_LINE.sub(" ", value).strip()


def _address(addr: str, display_name: str | None = None) -> Address:
    """An ASCII mailbox (international domains in their IDNA form)."""
    addr = addr.strip()
    local, at, domain = addr.rpartition("@")
    if not at or not local or not domain:
        raise ComposeError(f"not an email address: {addr!r}")
    try:
        domain = domain.encode("idna").decode("ascii").lower()
    except UnicodeError:
        raise ComposeError(f"not a valid domain: {domain!r}") from None
    addr = f"{local}@{domain}"
    if not _ADDR.match(addr):
        raise ComposeError(f"not an email address this server can send to: {addr!r}")
    return Address(display_name=_one_line(display_name or "")[:200], addr_spec=addr)


def compose_reply(
    *,
    from_address: str,
    display_name: str | None,
    to: str | Sequence[str],
    subject: str | None,
    text: str,
    message_id_domain: str,
    in_reply_to: str | None,
    references: Sequence[str],
    attachments: Sequence[tuple[str, str, bytes]] = (),
    reply_to: str | None = None,
    message_id: str | None = None,
) -> tuple[str, EmailMessage]:
    """A reply: (its Message-ID, the message). ``subject`` is the customer's (it gets
    one "Re: "); In-Reply-To and References thread it under ``in_reply_to``. No
    Auto-Submitted header: a person wrote it. ``message_id``: one assigned before
    (a queued message keeps its id across retries); else ``<uuid4 hex@domain>``."""
    domain = message_id_domain.strip().lower()
    if not re.fullmatch(r"[a-z0-9.-]{1,253}", domain):
        raise ComposeError(f"not a domain for Message-IDs: {message_id_domain!r}")
    if message_id is not None:
        given = normalize_message_id(message_id)
        if given is None:
            raise ComposeError(f"not a Message-ID: {message_id!r}")
        message_id = given
    else:
        message_id = f"<{uuid.uuid4().hex}@{domain}>"
    recipients = [to] if isinstance(to, str) else list(to)
    if not recipients:
        raise ComposeError("a reply needs a recipient")

    msg = EmailMessage(policy=POLICY)
    msg["From"] = _address(from_address, display_name)
    msg["To"] = [_address(r) for r in recipients]
    if reply_to:
        msg["Reply-To"] = _address(reply_to)
    msg["Subject"] = reply_subject(subject)
    msg["Date"] = format_datetime(datetime.now(UTC))
    msg["Message-ID"] = message_id
    parent = normalize_message_id(in_reply_to)
    if parent:
        msg["In-Reply-To"] = parent
    chain = thread_references(references, parent)
    if chain:
        msg["References"] = " ".join(chain)
    # Normalised line ends; set_content picks 7bit, quoted-printable or base64 as needed.
    msg.set_content(text.replace("\r\n", "\n").replace("\r", "\n"), charset="utf-8")
    for filename, content_type, data in attachments:
        maintype, _, subtype = content_type.partition("/")
        if not maintype or not subtype:
            maintype, subtype = "application", "octet-stream"
        msg.add_attachment(
            data, maintype=maintype, subtype=subtype, filename=_one_line(filename) or "attachment"
        )
    return message_id, msg
