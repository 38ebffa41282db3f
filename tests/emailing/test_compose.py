"""Agent replies: headers that thread, one "Re:", encodings, and what a client reads back."""

from __future__ import annotations

import re
from email.utils import parsedate_to_datetime

import pytest

from app.emailing.compose import (
    MAX_REFERENCES,
    ComposeError,
    compose_reply,
    reply_subject,
    thread_references,
)
from app.emailing.parse import parse_mail

DOMAIN = "inbound.switchboard.localhost"


def reply(**over: object) -> tuple[str, bytes]:
    args: dict[str, object] = {
        "from_address": f"support@{DOMAIN}",
        "display_name": "Acme Support",
        "to": "jane@customer.example",
        "subject": "Where is my order?",
        "text": "It ships tomorrow.",
        "message_id_domain": DOMAIN,
        "in_reply_to": "<CAF=jane-1@mail.customer.example>",
        "references": [],
        "attachments": [],
        "reply_to": None,
    } | over
    message_id, msg = compose_reply(**args)  # type: ignore[arg-type]
    return message_id, msg.as_bytes()


def test_headers_of_a_reply() -> None:
    message_id, raw = reply()
    assert re.fullmatch(rf"<[0-9a-f]{{32}}@{re.escape(DOMAIN)}>", message_id)
    assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")  # CRLF only
    mail = parse_mail(raw, max_attachments=5, max_attachment_bytes=10**6)
    assert mail.message_id == message_id
    assert mail.in_reply_to == "<CAF=jane-1@mail.customer.example>"
    assert mail.references == ["<CAF=jane-1@mail.customer.example>"]
    assert mail.subject == "Re: Where is my order?"
    assert (mail.from_address, mail.from_name) == (f"support@{DOMAIN}", "Acme Support")
    assert [a.address for a in mail.to] == ["jane@customer.example"]
    assert mail.text == "It ships tomorrow."
    assert not mail.auto_submitted  # a person wrote it
    assert b"Auto-Submitted" not in raw
    date = parsedate_to_datetime(re.search(rb"Date: ([^\r]+)", raw).group(1).decode())  # type: ignore[union-attr]
    assert date.tzinfo is not None


def test_two_replies_have_different_ids() -> None:
    assert reply()[0] != reply()[0]


def test_a_message_id_assigned_before_is_kept() -> None:
    message_id, raw = reply(message_id=f"abc123@{DOMAIN}")
    assert message_id == f"<abc123@{DOMAIN}>"
    assert f"Message-ID: <abc123@{DOMAIN}>".encode() in raw


@pytest.mark.parametrize(
    ("subject", "expected"),
    [
        ("Where is my order?", "Re: Where is my order?"),
        ("Re: Where is my order?", "Re: Where is my order?"),
        ("RE: re:Re: Where", "Re: Where"),
        ("Aw: Bestellung", "Re: Bestellung"),
        ("Re[2]: Status", "Re: Status"),
        ("Fwd: Invoice", "Re: Fwd: Invoice"),
        ("Regarding the invoice", "Re: Regarding the invoice"),
        ("", "Re: (no subject)"),
        (None, "Re: (no subject)"),
        ("Line\r\nBcc: evil@x.example", "Re: Line Bcc: evil@x.example"),
    ],
)
def test_one_re_prefix(subject: str | None, expected: str) -> None:
    assert reply_subject(subject) == expected


def test_references_chain_grows_without_repeats() -> None:
    first = ["<root@c.example>"]
    chain = thread_references(first, "<m2@s.example>")
    assert chain == ["<root@c.example>", "<m2@s.example>"]
    assert thread_references(chain, "<m2@s.example>") == chain  # answered twice: no repeat
    assert thread_references(["root@c.example bad <m3@x>"], None) == ["<m3@x>"]


def test_references_are_capped_keeping_the_root() -> None:
    previous = [f"<m{i}@x.example>" for i in range(40)]
    chain = thread_references(previous, "<new@x.example>")
    assert len(chain) == MAX_REFERENCES
    assert chain[0] == "<m0@x.example>"
    assert chain[-1] == "<new@x.example>"
    assert chain[1] == f"<m{40 - MAX_REFERENCES + 2}@x.example>"
    _, raw = reply(references=previous, in_reply_to="<new@x.example>")
    mail = parse_mail(raw, max_attachments=5, max_attachment_bytes=10**6)
    assert mail.references == chain


def test_non_ascii_text_subject_and_names() -> None:
    text = "Grüße, Zoë — ваш заказ отправлен 🚚\n" + "long line " * 200
    _, raw = reply(
        subject="Commande n° 42 — où est-elle ?",
        display_name="Ünïcode Sùpport",
        text=text,
        to="zoe@exämple.com",
    )
    raw.decode("ascii")  # 7-bit on the wire: encoded words, quoted-printable/base64
    assert all(len(line) <= 998 for line in raw.split(b"\r\n"))
    mail = parse_mail(raw, max_attachments=5, max_attachment_bytes=10**6)
    assert mail.subject == "Re: Commande n° 42 — où est-elle ?"
    assert mail.from_name == "Ünïcode Sùpport"
    assert [a.address for a in mail.to] == ["zoe@xn--exmple-cua.com"]  # IDNA
    assert mail.text == text.strip()


def test_attachments_and_reply_to() -> None:
    _, raw = reply(
        attachments=[
            ("invoice.pdf", "application/pdf", b"%PDF-1.4 data"),
            ("notes.txt", "text/plain", "café\n".encode()),
            ("weird", "nonsense", b"\x00\x01"),
        ],
        reply_to=f"support+t1@{DOMAIN}",
    )
    assert f"Reply-To: support+t1@{DOMAIN}".encode() in raw
    mail = parse_mail(raw, max_attachments=5, max_attachment_bytes=10**6)
    assert mail.text == "It ships tomorrow."
    assert [(a.filename, a.content_type, a.data) for a in mail.attachments] == [
        ("invoice.pdf", "application/pdf", b"%PDF-1.4 data"),
        ("notes.txt", "text/plain", "café\n".encode()),
        ("weird", "application/octet-stream", b"\x00\x01"),
    ]


@pytest.mark.parametrize(
    "over",
    [
        {"to": "not-an-address"},
        {"to": []},
        {"from_address": "support@"},
        {"to": "jané@example.com"},  # a non-ASCII local part needs SMTPUTF8
        {"message_id_domain": "bad domain"},
        {"to": "a@b.example>, evil@x.example"},
    ],
)
def test_bad_addresses_are_refused(over: dict[str, object]) -> None:
    with pytest.raises(ComposeError):
        reply(**over)


def test_display_name_cannot_inject_headers() -> None:
    _, raw = reply(display_name="Acme\r\nBcc: evil@x.example")
    assert b"\r\nBcc:" not in raw
