"""Inbound mail as data: threading headers, sender, text, the new part of a reply and
attachments, read defensively.

Anything may arrive at an MX: missing or malformed headers, unknown charsets, huge
headers, absurd MIME trees. ``parse_mail`` never raises on such input; it refuses only
what it cannot read at all, with ``MailRejected`` (the SMTP server answers 554).
"""

from __future__ import annotations

import email.policy
import hashlib
import logging
import mimetypes
import re
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.header import decode_header, make_header
from email.message import EmailMessage, Message
from email.parser import BytesParser
from email.utils import getaddresses, parsedate_to_datetime
from typing import Any

from app.emailing.htmltext import html_to_text
from app.emailing.quotes import reply_part

log = logging.getLogger("switchboard.emailing")


class MailRejected(Exception):
    """A message we refuse to take (the reason goes back to the sending server)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass(frozen=True, slots=True)
class MailAddress:
    address: str  # lower case
    display_name: str | None = None


@dataclass(frozen=True, slots=True)
class MailAttachment:
    filename: str
    content_type: str
    data: bytes
    inline: bool = False
    content_id: str | None = None


@dataclass(frozen=True, slots=True)
class SkippedPart:
    filename: str
    content_type: str
    size: int
    reason: str  # too-large | too-many | unreadable


@dataclass(slots=True)
class ParsedMail:
    message_id: str | None
    in_reply_to: str | None
    references: list[str]
    from_address: str | None
    from_name: str | None
    to: list[MailAddress]
    cc: list[MailAddress]
    subject: str | None
    date: datetime | None
    text: str
    reply_text: str
    attachments: list[MailAttachment] = field(default_factory=list)
    skipped: list[SkippedPart] = field(default_factory=list)
    auto_submitted: bool = False
    # A stable id for dedupe when the message has no Message-ID (sha256 of the bytes).
    fingerprint: str = ""
    message: Message = field(default_factory=EmailMessage, repr=False)


# Caps against hostile input: past them, the rest is ignored (or the mail refused).
MAX_PARTS = 1000
MAX_DEPTH = 20
MAX_HEADER_CHARS = 16_384  # of one header value that we interpret
MAX_ADDRESSES = 100
MAX_REFERENCES = 100
MAX_TEXT_CHARS = 1_000_000
MAX_HTML_CHARS = 2_000_000

_PARSER = BytesParser(policy=email.policy.default)
_MSGID = re.compile(r"<([^<>\s]{1,995})>")
_CONTENT_TYPE = re.compile(r"^[a-z0-9][a-z0-9!#$&^_.+-]{0,63}/[a-z0-9][a-z0-9!#$&^_.+-]{0,126}$")
_ADDR = re.compile(r"^[^\s@<>()\[\],;:\"\\]{1,64}@[a-z0-9](?:[a-z0-9.-]{0,251}[a-z0-9])?$")
_UNSAFE_NAME = re.compile(r"[\x00-\x1f\x7f<>:\"/\\|?*]+")


# -- headers ------------------------------------------------------------------------------


def _header_text(value: str) -> str:
    """Unfolded and capped; raw 8-bit bytes (kept by the parser as surrogate escapes)
    read as UTF-8, the charset such headers nearly always use."""
    value = re.sub(r"\r?\n[ \t]", " ", value[: MAX_HEADER_CHARS * 2])[:MAX_HEADER_CHARS]
    return value.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _raw_header(msg: Message, name: str) -> str | None:
    """The first ``name`` header as it came (unfolded, not yet parsed), capped."""
    try:
        for key, value in msg.raw_items():
            if key.lower() == name.lower():
                return _header_text(str(value)).strip()
    except Exception:  # noqa: S110 - a broken header block reads as no header
        pass
    return None


def _raw_headers(msg: Message, name: str) -> list[str]:
    out: list[str] = []
    try:
        for key, value in msg.raw_items():
            if key.lower() == name.lower():
                out.append(_header_text(str(value)))
    except Exception:  # noqa: S110
        pass
    return out


def decode_words(value: str) -> str:
    """RFC 2047 encoded words decoded (unknown charsets replaced), one line, trimmed."""
    try:
        text = str(make_header(decode_header(value)))
    except Exception:
        text = value
    text = text.encode("utf-8", "replace").decode("utf-8")  # lone surrogates
    return re.sub(r"[\x00-\x1f\x7f]+", " ", text).strip()


def normalize_message_id(value: str | None) -> str | None:
    """``<id@host>`` as it appears in threading headers (the first one when several)."""
    if not value:
        return None
    match = _MSGID.search(value)
    if match:
        return f"<{match.group(1)}>"
    bare = value.strip().split()[0] if value.strip() else ""
    if "@" in bare and len(bare) <= 995 and not re.search(r"[<>\"\\]", bare):
        return f"<{bare}>"
    return None


def message_ids(value: str | None, limit: int = MAX_REFERENCES) -> list[str]:
    """Every ``<...>`` id of a References-style header, in order, without repeats."""
    out: list[str] = []
    seen: set[str] = set()
    for match in _MSGID.finditer(value or ""):
        mid = f"<{match.group(1)}>"
        if mid not in seen:
            seen.add(mid)
            out.append(mid)
    if len(out) > limit:  # keep the thread's root and the newest ones
        out = [out[0], *out[-(limit - 1) :]]
    return out


def _addresses(msg: Message, name: str) -> list[MailAddress]:
    values = _raw_headers(msg, name)
    out: list[MailAddress] = []
    try:
        pairs = getaddresses(values)
    except Exception:
        return out
    for display, addr in pairs[:MAX_ADDRESSES]:
        addr = addr.strip().lower()
        if not _ADDR.match(addr):
            continue
        display = decode_words(display)[:200] if display else ""
        out.append(MailAddress(addr, display or None))
    return out


def _date(msg: Message) -> datetime | None:
    raw = _raw_header(msg, "Date")
    if not raw:
        return None
    try:
        when = parsedate_to_datetime(raw[:200])
    except Exception:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return when.astimezone(UTC)


def is_auto_submitted(msg: Message) -> bool:
    """RFC 3834 and the usual vendor markers: mail that no one should answer
    automatically (auto-replies, vacation notices, bulk and list mail)."""
    auto = (_raw_header(msg, "Auto-Submitted") or "").split(";")[0].strip().lower()
    if auto and auto != "no":
        return True
    precedence = (_raw_header(msg, "Precedence") or "").strip().lower()
    if precedence in ("bulk", "junk", "list", "auto_reply"):
        return True
    for name in ("X-Autoreply", "X-Autorespond", "X-Autoresponder"):
        value = _raw_header(msg, name)
        if value is not None and value.strip().lower() not in ("no", "false", "0"):
            return True
    return False


# -- the MIME tree ------------------------------------------------------------------------


def content_type_of(part: Message) -> str:
    try:
        ctype = part.get_content_type().lower()
    except Exception:
        return "application/octet-stream"
    return ctype if _CONTENT_TYPE.match(ctype) else "application/octet-stream"


def _has_filename(part: Message) -> bool:
    try:
        return bool(part.get_param("name") or part.get_filename())
    except Exception:
        return False


def _disposition(part: Message) -> str | None:
    try:
        value = part.get_content_disposition()
    except Exception:
        return None
    return value.lower() if value else None


def payload_of(part: Message) -> Any:
    """``part.get_payload()``, or None where the stdlib cannot read it."""
    try:
        return part.get_payload()
    except Exception:
        return None


def leaf_parts(msg: Message) -> Iterator[Message]:
    """Leaf parts, depth first, in order; attached messages (message/rfc822) are leaves;
    nothing below MAX_DEPTH and at most MAX_PARTS parts."""
    stack: list[tuple[Message, int]] = [(msg, 0)]
    seen = 0
    while stack:
        part, depth = stack.pop()
        seen += 1
        if seen > MAX_PARTS:
            raise MailRejected(f"the message has more than {MAX_PARTS} MIME parts")
        ctype = content_type_of(part)
        if ctype.startswith("multipart/"):
            payload = payload_of(part)
            if isinstance(payload, list) and depth < MAX_DEPTH:
                stack.extend((p, depth + 1) for p in reversed(payload) if isinstance(p, Message))
            continue
        yield part


_CRLF = email.policy.default.clone(linesep="\r\n")


def _payload_bytes(part: Message) -> bytes:
    payload = payload_of(part)
    if isinstance(payload, list):  # message/rfc822, message/delivery-status ...
        try:
            return b"\r\n".join(m.as_bytes(policy=_CRLF) for m in payload if isinstance(m, Message))
        except Exception:
            return b""
    try:
        data = part.get_payload(decode=True)
    except Exception:
        return b""
    return data if isinstance(data, bytes) else b""


def _encoded_size(part: Message) -> int:
    """A cheap upper bound of the decoded size, before decoding."""
    payload = payload_of(part)
    if isinstance(payload, str):
        return len(payload)
    if isinstance(payload, bytes):
        return len(payload)
    return 0


def _decode_text(part: Message, data: bytes) -> str:
    try:
        charset = part.get_content_charset() or "utf-8"
    except Exception:
        charset = "utf-8"
    for candidate in (charset, "utf-8"):
        try:
            return data.decode(candidate, errors="replace")
        except Exception:  # noqa: S112 - unknown or non-text codec: try the next one
            continue
    return data.decode("latin-1")


def _filename(part: Message, content_type: str, index: int) -> str:
    try:
        raw = part.get_filename()
    except Exception:
        raw = None
    name = decode_words(raw) if raw else ""
    name = unicodedata.normalize("NFC", name)
    name = re.split(r"[/\\]", name)[-1]
    name = _UNSAFE_NAME.sub("_", name).strip().lstrip(".").strip()
    if len(name) > 200:
        stem, dot, ext = name.rpartition(".")
        name = (stem[: 200 - len(ext) - 1] + "." + ext) if dot and len(ext) <= 16 else name[:200]
    if not name:
        guessed = mimetypes.guess_extension(content_type)
        ext = ".eml" if content_type == "message/rfc822" else guessed or ".bin"
        name = f"attachment-{index}{ext}"
    return name


def _content_id(part: Message) -> str | None:
    value = _raw_header(part, "Content-ID")
    return normalize_message_id(value) if value else None


# -- the message --------------------------------------------------------------------------


def read_message(raw: bytes) -> Message:
    if not raw.strip():
        raise MailRejected("the message is empty")
    try:
        return _PARSER.parsebytes(raw)
    except RecursionError:
        raise MailRejected("the MIME structure is nested too deeply") from None
    except Exception:
        raise MailRejected("the message cannot be parsed") from None


def parse_mail(raw: bytes, *, max_attachments: int, max_attachment_bytes: int) -> ParsedMail:
    """Read one RFC 5322 message. Parts past the attachment limits are listed in
    ``skipped`` with the reason instead of failing the mail."""
    msg = read_message(raw)
    try:
        return _parse(msg, raw, max_attachments, max_attachment_bytes)
    except MailRejected:
        raise
    except RecursionError:
        raise MailRejected("the MIME structure is nested too deeply") from None
    except Exception:  # a stdlib corner the reads above do not guard: refuse, never crash
        log.warning("unreadable inbound message", exc_info=True)
        raise MailRejected("the message cannot be read") from None


def _parse(msg: Message, raw: bytes, max_attachments: int, max_bytes: int) -> ParsedMail:
    senders = _addresses(msg, "From") or _addresses(msg, "Sender")
    subject_raw = _raw_header(msg, "Subject")
    references = message_ids(_raw_header(msg, "References"))
    in_reply_to = normalize_message_id(_raw_header(msg, "In-Reply-To"))

    plain: list[str] = []
    html: list[str] = []
    attachments: list[MailAttachment] = []
    skipped: list[SkippedPart] = []
    for index, part in enumerate(leaf_parts(msg), start=1):
        ctype = content_type_of(part)
        disposition = _disposition(part)
        if (
            ctype in ("text/plain", "text/html")
            and disposition != "attachment"
            and not _has_filename(part)
        ):
            data = _payload_bytes(part)
            (plain if ctype == "text/plain" else html).append(_decode_text(part, data))
            continue
        if ctype.startswith("multipart/"):
            continue  # deeper than MAX_DEPTH
        filename = _filename(part, ctype, index)
        if len(attachments) >= max_attachments:
            skipped.append(SkippedPart(filename, ctype, _encoded_size(part), "too-many"))
            continue
        if _encoded_size(part) * 3 // 4 > max_bytes:
            skipped.append(SkippedPart(filename, ctype, _encoded_size(part) * 3 // 4, "too-large"))
            continue
        data = _payload_bytes(part)
        if len(data) > max_bytes:
            skipped.append(SkippedPart(filename, ctype, len(data), "too-large"))
            continue
        if not data:
            skipped.append(SkippedPart(filename, ctype, 0, "unreadable"))
            continue
        attachments.append(
            MailAttachment(
                filename=filename,
                content_type=ctype,
                data=data,
                inline=disposition != "attachment" and ctype.startswith("image/"),
                content_id=_content_id(part),
            )
        )

    body = "\n\n".join(t.strip() for t in plain if t.strip())
    if not body and html:
        body = "\n\n".join(html_to_text(h[:MAX_HTML_CHARS]) for h in html).strip()
    body = body.replace("\r\n", "\n").replace("\r", "\n")[:MAX_TEXT_CHARS]
    body = body.encode("utf-8", "replace").decode("utf-8").replace("\x00", "")
    return ParsedMail(
        message_id=normalize_message_id(_raw_header(msg, "Message-ID")),
        in_reply_to=in_reply_to,
        references=references,
        from_address=senders[0].address if senders else None,
        from_name=senders[0].display_name if senders else None,
        to=_addresses(msg, "To"),
        cc=_addresses(msg, "Cc"),
        subject=decode_words(subject_raw)[:998] if subject_raw is not None else None,
        date=_date(msg),
        text=body,
        reply_text=reply_part(body),
        attachments=attachments,
        skipped=skipped,
        auto_submitted=is_auto_submitted(msg),
        fingerprint=f"<{hashlib.sha256(raw).hexdigest()}@sha256.switchboard>",
        message=msg,
    )
