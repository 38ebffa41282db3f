"""Delivery status notifications (RFC 3464): which of our messages failed, for whom, why.

A DSN is ``multipart/report; report-type=delivery-status`` with a human-readable part,
a ``message/delivery-status`` part (one block of per-message fields, then one block per
recipient) and usually the original message (``message/rfc822``) or its headers
(``text/rfc822-headers``), where the original Message-ID is. Some servers wrap or mislabel
the report; when the envelope sender is null (``<>``, as RFC 5321 requires of
notifications) any delivery-status part counts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from email.message import Message
from email.parser import HeaderParser
from typing import Literal

from app.emailing.parse import (
    MailRejected,
    ParsedMail,
    content_type_of,
    leaf_parts,
    message_ids,
    normalize_message_id,
    payload_of,
    read_message,
)

Action = Literal["failed", "delayed", "delivered", "relayed", "expanded"]
_ACTIONS: tuple[Action, ...] = ("failed", "delayed", "delivered", "relayed", "expanded")
_DSN_TYPES = ("message/delivery-status", "message/global-delivery-status")
_STATUS = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b")
_SMTP_CODE = re.compile(r"^\s*([245])\d\d\b")
_MAX_RECIPIENTS = 100


@dataclass(frozen=True, slots=True)
class BounceRecipient:
    final_recipient: str | None
    original_recipient: str | None
    action: Action
    status: str | None  # "5.1.1"
    diagnostic: str | None  # "smtp; 550 5.1.1 <x@y>: Recipient address rejected"
    permanent: bool


@dataclass(frozen=True, slots=True)
class Bounce:
    original_message_id: str | None
    recipients: list[BounceRecipient]
    reporting_mta: str | None

    @property
    def action(self) -> Action:
        """The gravest per-recipient action: failed, then delayed, then the others."""
        actions = {r.action for r in self.recipients}
        return next(a for a in _ACTIONS if a in actions)

    @property
    def permanent(self) -> bool:
        return any(r.action == "failed" and r.permanent for r in self.recipients)

    @property
    def diagnostic(self) -> str | None:
        for r in self.recipients:
            if r.action == self.action and (r.diagnostic or r.status):
                return r.diagnostic or r.status
        return None


def _typed_value(value: str | None) -> str | None:
    """``rfc822; user@example.com`` -> ``user@example.com`` (the type is dropped)."""
    if value is None:
        return None
    _, sep, rest = value.partition(";")
    text = re.sub(r"\s+", " ", rest if sep else value).strip()
    return text[:1000] or None


def _fields(text: str) -> list[dict[str, str]]:
    """Blocks of ``Name: value`` lines (continuations folded in), split at blank lines."""
    blocks: list[dict[str, str]] = []
    current: dict[str, str] = {}
    last: str | None = None
    for line in text.replace("\r\n", "\n").split("\n")[:5000]:
        if not line.strip():
            if current:
                blocks.append(current)
            current, last = {}, None
            continue
        if line[0] in " \t" and last is not None:
            current[last] += " " + line.strip()
            continue
        name, sep, value = line.partition(":")
        if sep and name.strip() and " " not in name.strip():
            last = name.strip().lower()
            current.setdefault(last, value.strip()[:2000])
    if current:
        blocks.append(current)
    return blocks


def _header_block(msg: Message) -> dict[str, str]:
    out: dict[str, str] = {}
    try:
        for key, value in msg.raw_items():
            out.setdefault(key.strip().lower(), re.sub(r"\s+", " ", str(value)).strip()[:2000])
    except Exception:  # noqa: S110 - unreadable fields read as absent
        pass
    return out


def _dsn_blocks(part: Message) -> list[dict[str, str]]:
    """The per-message block and the per-recipient blocks of a delivery-status part,
    however the parser stored them (a list of header blocks, one message, or text)."""
    payload = payload_of(part)
    blocks: list[dict[str, str]] = []
    items = payload if isinstance(payload, list) else [payload]
    for item in items:
        if isinstance(item, Message):
            head = _header_block(item)
            if head:
                blocks.append(head)
            body = payload_of(item)
            if isinstance(body, str) and body.strip():
                blocks.extend(_fields(body))
        elif isinstance(item, str):
            blocks.extend(_fields(item))
        elif isinstance(item, bytes):
            blocks.extend(_fields(item.decode("utf-8", "replace")))
    return blocks


def _recipient(block: dict[str, str]) -> BounceRecipient | None:
    action = (block.get("action") or "").split()[0].lower() if block.get("action") else ""
    if action not in _ACTIONS:
        return None
    diagnostic = _typed_value(block.get("diagnostic-code"))
    status_match = _STATUS.search(block.get("status") or "") or _STATUS.search(diagnostic or "")
    status = ".".join(status_match.groups()) if status_match else None
    if status is not None:
        permanent = status.startswith("5")
    else:
        code = _SMTP_CODE.match(diagnostic or "")
        permanent = action == "failed" and (code is None or code.group(1) == "5")
    return BounceRecipient(
        final_recipient=_typed_value(block.get("final-recipient")),
        original_recipient=_typed_value(block.get("original-recipient")),
        action=action,  # type: ignore[arg-type]  # checked against _ACTIONS above
        status=status,
        diagnostic=diagnostic,
        permanent=permanent and action == "failed",
    )


def _original_message_id(parts: list[Message], outer: Message) -> str | None:
    for part in parts:
        ctype = content_type_of(part)
        if ctype in ("message/rfc822", "message/global"):
            inner = payload_of(part)
            if isinstance(inner, list) and inner and isinstance(inner[0], Message):
                mid = normalize_message_id(_header_block(inner[0]).get("message-id"))
                if mid:
                    return mid
        elif ctype in ("text/rfc822-headers", "message/rfc822-headers"):
            try:
                raw = part.get_payload(decode=True)
            except Exception:  # noqa: S112 - unreadable headers part: look further
                continue
            if isinstance(raw, bytes):
                headers = HeaderParser().parsestr(raw[:65536].decode("utf-8", "replace"))
                mid = normalize_message_id(_header_block(headers).get("message-id"))
                if mid:
                    return mid
    # Exchange and others also thread the report to the original.
    outer_fields = _header_block(outer)
    in_reply_to = normalize_message_id(outer_fields.get("in-reply-to"))
    if in_reply_to:
        return in_reply_to
    refs = message_ids(outer_fields.get("references"))
    return refs[-1] if refs else None


def _report_type(msg: Message) -> str:
    try:
        value = msg.get_param("report-type")
    except Exception:
        return ""
    return value.strip().lower() if isinstance(value, str) else ""


def _null_sender(envelope_from: str | None) -> bool:
    return envelope_from is None or envelope_from.strip() in ("", "<>")


def parse_bounce(
    raw_or_parsed: bytes | Message | ParsedMail, envelope_from: str | None
) -> Bounce | None:
    """The delivery report in this message, or None when it is not one (an auto-reply,
    a customer's mail). A report of successful delivery is a Bounce too, with the action
    ``delivered``/``relayed``/``expanded``: it is not a customer's message either."""
    if isinstance(raw_or_parsed, ParsedMail):
        msg = raw_or_parsed.message
    elif isinstance(raw_or_parsed, Message):
        msg = raw_or_parsed
    else:
        try:
            msg = read_message(raw_or_parsed)
        except MailRejected:
            return None
    try:
        parts = list(leaf_parts(msg))
    except (MailRejected, RecursionError):
        return None
    is_report = (
        content_type_of(msg) == "multipart/report" and _report_type(msg) == "delivery-status"
    )
    dsn_parts = [p for p in parts if content_type_of(p) in _DSN_TYPES]
    if not dsn_parts or not (is_report or _null_sender(envelope_from)):
        return None
    try:
        blocks = [b for part in dsn_parts for b in _dsn_blocks(part)]
        original = _original_message_id(parts, msg)
    except Exception:  # an unreadable report is no report
        return None
    per_message = next((b for b in blocks if "reporting-mta" in b), {})
    recipients = [r for b in blocks if (r := _recipient(b)) is not None][:_MAX_RECIPIENTS]
    if not recipients:
        return None
    return Bounce(
        original_message_id=original,
        recipients=recipients,
        reporting_mta=_typed_value(per_message.get("reporting-mta")),
    )
