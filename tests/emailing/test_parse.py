"""Inbound mail parsing: threading headers, bodies, the new part of replies, attachments,
auto-reply markers, and hostile input (never an exception other than MailRejected)."""

from __future__ import annotations

import random
import time
from datetime import UTC, datetime
from email.message import EmailMessage
from pathlib import Path

import pytest

from app.emailing.parse import MailRejected, ParsedMail, parse_mail
from app.emailing.quotes import reply_part

SAMPLES = Path(__file__).parent / "samples"
LIMITS = {"max_attachments": 5, "max_attachment_bytes": 100_000}


def parse(raw: bytes | str, **limits: int) -> ParsedMail:
    data = raw.encode() if isinstance(raw, str) else raw
    return parse_mail(data, **(LIMITS | limits))


# -- headers ------------------------------------------------------------------------------


def test_threading_and_address_headers() -> None:
    mail = parse(
        "Message-ID:   <CAF=abc.123@mail.example.com>  \r\n"
        "In-Reply-To: <reply-parent@switchboard.example> (added by the client)\r\n"
        "References: <root@a.example>\r\n"
        "  <mid@b.example> <root@a.example>\r\n"
        "\t<reply-parent@switchboard.example>\r\n"
        "From: =?utf-8?q?Zo=C3=AB_M=C3=BCller?= <Zoe.Muller@Example.COM>\r\n"
        "To: Support <Support@inbound.switchboard.localhost>, other@example.org\r\n"
        'Cc: "Doe, Jane" <jane@example.net>\r\n'
        "Subject: =?utf-8?b?UmU6IFdoZXJlIGlzIG15IG9yZGVyPyDwn5qa?=\r\n"
        "Date: Tue, 14 May 2024 12:30:00 +0200\r\n"
        "\r\n"
        "Hello\r\n"
    )
    assert mail.message_id == "<CAF=abc.123@mail.example.com>"
    assert mail.in_reply_to == "<reply-parent@switchboard.example>"
    assert mail.references == [
        "<root@a.example>",
        "<mid@b.example>",
        "<reply-parent@switchboard.example>",
    ]
    assert mail.from_address == "zoe.muller@example.com"
    assert mail.from_name == "Zoë Müller"
    assert [a.address for a in mail.to] == [
        "support@inbound.switchboard.localhost",
        "other@example.org",
    ]
    assert mail.to[0].display_name == "Support"
    assert [(a.address, a.display_name) for a in mail.cc] == [("jane@example.net", "Doe, Jane")]
    assert mail.subject == "Re: Where is my order? 🚚"
    assert mail.date == datetime(2024, 5, 14, 10, 30, tzinfo=UTC)
    assert mail.text == "Hello"
    assert not mail.auto_submitted


def test_message_id_without_brackets_is_normalised() -> None:
    mail = parse("Message-ID: abc@host.example\r\nIn-Reply-To: x@y.example\r\n\r\nhi")
    assert mail.message_id == "<abc@host.example>"
    assert mail.in_reply_to == "<x@y.example>"


def test_mail_without_message_id_gets_a_stable_fingerprint() -> None:
    raw = b"From: a@example.com\r\nSubject: no id\r\n\r\nbody"
    first, again = parse(raw), parse(raw)
    assert first.message_id is None
    assert first.fingerprint == again.fingerprint
    assert first.fingerprint != parse(raw + b"!").fingerprint
    assert first.fingerprint.startswith("<") and first.fingerprint.endswith(">")


# -- bodies -------------------------------------------------------------------------------


def test_plain_text_is_preferred_to_html() -> None:
    msg = EmailMessage()
    msg["From"] = "a@example.com"
    msg.set_content("The plain version")
    msg.add_alternative("<p>The <b>HTML</b> version</p>", subtype="html")
    mail = parse(msg.as_bytes())
    assert mail.text == "The plain version"
    assert mail.attachments == []


def test_html_only_mail_becomes_readable_text() -> None:
    html = (
        "<html><head><title>Ignore me</title><style>p{color:red}</style></head><body>"
        "<script>alert('x')</script>"
        "<p>Hello&nbsp;team,</p><p>My order&#39;s status &amp; tracking:</p>"
        "<ul><li>Order 1234</li><li>See <a href='https://shop.example/o/1234'>the page</a></li></ul>"
        "<div>Line one<br>Line two</div>"
        "<noscript>enable js</noscript>"
        "</body></html>"
    )
    msg = EmailMessage()
    msg["From"] = "a@example.com"
    msg.set_content(html, subtype="html")
    mail = parse(msg.as_bytes())
    assert "alert" not in mail.text and "color" not in mail.text and "Ignore me" not in mail.text
    assert "enable js" not in mail.text
    assert mail.text.splitlines() == [
        "Hello team,",
        "",
        "My order's status & tracking:",
        "",
        "- Order 1234",
        "- See the page <https://shop.example/o/1234>",
        "",
        "Line one",
        "Line two",
    ]


def test_unknown_and_non_text_charsets_do_not_fail() -> None:
    body = "Grüße aus Köln".encode()
    for charset in ("x-no-such-charset", "base64", "rot13", "unknown-8bit"):
        raw = (
            f"From: a@example.com\r\nContent-Type: text/plain; charset={charset}\r\n"
            "Content-Transfer-Encoding: 8bit\r\n\r\n"
        ).encode() + body
        assert parse(raw).text == "Grüße aus Köln", charset


def test_latin1_body_and_raw_utf8_headers() -> None:
    raw = (
        "From: Jörg <jorg@example.de>\r\nSubject: Bestellung für Jörg\r\n"
        "Content-Type: text/plain; charset=iso-8859-1\r\n"
        "Content-Transfer-Encoding: 8bit\r\n\r\n"
    ).encode() + "Grüße".encode("latin-1")
    mail = parse(raw)
    assert mail.subject == "Bestellung für Jörg"
    assert mail.from_name == "Jörg"
    assert mail.text == "Grüße"


def test_encoded_word_with_an_unknown_charset_is_kept_readable() -> None:
    mail = parse("From: a@example.com\r\nSubject: =?x-klingon?q?Qapla=27?= ok\r\n\r\nbody")
    assert mail.subject is not None and "ok" in mail.subject


# -- the new part of a reply --------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "Thanks, that worked!\n\nOn Tue, 14 May 2024 at 10:00, Acme Support <support@acme.example> wrote:\n> Please restart it.\n> \n> Acme",
        "Thanks, that worked!\n\nOn Tue, 14 May 2024 at 10:00, Acme Support <\nsupport@acme.example> wrote:\n> Please restart it.",
        "Thanks, that worked!\n\n-----Original Message-----\nFrom: Acme Support\nSent: Tuesday\nPlease restart it.",
        "Thanks, that worked!\n________________________________\nFrom: Acme Support <support@acme.example>\nSent: Tuesday, May 14, 2024 10:00 AM\nTo: Jane <jane@example.com>\nSubject: Re: Router\n\nPlease restart it.",
        "Thanks, that worked!\n\nLe mar. 14 mai 2024 à 10:00, Acme <support@acme.example> a écrit :\n> Redémarrez.",
        "Thanks, that worked!\n\nAm 14.05.2024 um 10:00 schrieb Acme Support <support@acme.example>:\n> Bitte neu starten.",
        "Thanks, that worked!\n\n> Please restart it.\n>\n> Acme\n",
    ],
)
def test_reply_text_stops_at_the_quoted_message(text: str) -> None:
    assert reply_part(text) == "Thanks, that worked!"


def test_inline_answers_keep_their_quotes() -> None:
    text = (
        "On Tue, Acme Support <support@acme.example> wrote:\n"
        "> Which model?\nThe X200.\n> Since when?\nSince Monday."
    )
    assert reply_part(text) == text


def test_unquoted_mail_is_all_reply() -> None:
    assert (
        reply_part("Hello,\n\nmy router is down.\n\nJane\n")
        == "Hello,\n\nmy router is down.\n\nJane"
    )


def test_reply_text_of_a_parsed_mail() -> None:
    mail = parse(
        "From: a@example.com\r\n\r\nYes please.\r\n\r\nOn Mon, Support <s@x.example> wrote:\r\n> Shall we?\r\n"
    )
    assert mail.reply_text == "Yes please."
    assert "Shall we?" in mail.text


# -- attachments --------------------------------------------------------------------------


def _with_attachments() -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "a@example.com"
    msg.set_content("See attached.")
    msg.add_attachment(b"%PDF-1.4 invoice", maintype="application", subtype="pdf",
                       filename="../../etc/invoice 05\x07.pdf")  # fmt: skip
    msg.add_attachment(b"\x89PNG photo", maintype="image", subtype="png", filename="Fotó.png")
    msg.add_attachment(b"", maintype="application", subtype="octet-stream", filename="empty.bin")
    return msg


def test_attachments_with_sanitised_names() -> None:
    mail = parse(_with_attachments().as_bytes())
    assert mail.text == "See attached."
    assert [(a.filename, a.content_type, a.data) for a in mail.attachments] == [
        ("invoice 05 .pdf", "application/pdf", b"%PDF-1.4 invoice"),
        ("Fotó.png", "image/png", b"\x89PNG photo"),
    ]
    assert [(s.filename, s.reason) for s in mail.skipped] == [("empty.bin", "unreadable")]


def test_attachment_limits_skip_and_say_why() -> None:
    msg = EmailMessage()
    msg["From"] = "a@example.com"
    msg.set_content("many")
    msg.add_attachment(b"x" * 2000, maintype="application", subtype="zip", filename="big.zip")
    for i in range(3):
        msg.add_attachment(b"small", maintype="text", subtype="csv", filename=f"f{i}.csv")
    mail = parse(msg.as_bytes(), max_attachments=2, max_attachment_bytes=1000)
    assert [a.filename for a in mail.attachments] == ["f0.csv", "f1.csv"]
    assert [(s.filename, s.reason) for s in mail.skipped] == [
        ("big.zip", "too-large"),
        ("f2.csv", "too-many"),
    ]
    assert mail.skipped[0].size >= 1000


def test_inline_images_and_forwarded_messages_are_attachments() -> None:
    msg = EmailMessage()
    msg["From"] = "a@example.com"
    msg.set_content("plain")
    msg.add_alternative('<p>Look: <img src="cid:logo@x"></p>', subtype="html")
    msg.get_payload()[1].add_related(b"GIF89a", maintype="image", subtype="gif", cid="<logo@x>")
    forwarded = EmailMessage()
    forwarded["From"] = "b@example.com"
    forwarded["Subject"] = "the original"
    forwarded.set_content("original text")
    msg.add_attachment(forwarded)
    mail = parse(msg.as_bytes())
    assert mail.text == "plain"
    image, eml = mail.attachments
    assert (image.content_type, image.inline, image.content_id, image.data) == (
        "image/gif",
        True,
        "<logo@x>",
        b"GIF89a",
    )
    assert image.filename.endswith(".gif")
    assert eml.content_type == "message/rfc822" and eml.filename.endswith(".eml")
    assert b"Subject: the original" in eml.data and b"original text" in eml.data


# -- auto-replies -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "auto"),
    [
        ("Auto-Submitted: auto-replied", True),
        ("Auto-Submitted: auto-generated; owner-email=x@y", True),
        ("Auto-Submitted: no", False),
        ("Precedence: bulk", True),
        ("Precedence: list", True),
        ("Precedence: junk", True),
        ("Precedence: first-class", False),
        ("X-Autoreply: yes", True),
        ("X-Autorespond: Out of office", True),
        ("X-Mailer: Outlook", False),
    ],
)
def test_auto_submitted(header: str, auto: bool) -> None:
    assert parse(f"From: a@example.com\r\n{header}\r\n\r\nAway").auto_submitted is auto


# -- hostile input ------------------------------------------------------------------------


def test_no_headers_at_all() -> None:
    mail = parse(b"just some text\r\nand more\r\n")
    assert (mail.message_id, mail.from_address, mail.subject, mail.date) == (None, None, None, None)
    assert mail.references == [] and mail.to == []


def test_empty_message_is_refused() -> None:
    with pytest.raises(MailRejected):
        parse(b"  \r\n")


def test_huge_headers_are_capped_and_fast() -> None:
    many_refs = " ".join(f"<r{i}@x.example>" for i in range(50_000))
    raw = (
        "From: a@example.com\r\n"
        f"Subject: {'A' * 1_000_000}\r\n"
        f"To: {', '.join(f'u{i}@example.com' for i in range(20_000))}\r\n"
        f"References: {many_refs}\r\n"
        "Date: " + "9" * 100_000 + "\r\n\r\nbody"
    ).encode()
    started = time.monotonic()
    mail = parse(raw)
    assert time.monotonic() - started < 10
    assert mail.subject is not None and len(mail.subject) <= 998
    assert len(mail.to) <= 100
    assert mail.references[0] == "<r0@x.example>" and len(mail.references) <= 100
    assert mail.date is None


def test_deeply_nested_mime_is_refused() -> None:
    depth = 3000
    head = b"".join(
        b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (i, i)
        for i in range(depth)
    )
    with pytest.raises(MailRejected, match="nested"):
        parse(b"From: a@example.com\r\n" + head + b"Content-Type: text/plain\r\n\r\nhi\r\n")


def test_moderately_nested_mime_reads_what_is_shallow_enough() -> None:
    head = b"".join(
        b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (i, i) for i in range(60)
    )
    mail = parse(b"From: a@example.com\r\n" + head + b"Content-Type: text/plain\r\n\r\ndeep\r\n")
    assert mail.text == ""  # below the depth we read


def test_too_many_parts_are_refused() -> None:
    parts = b"".join(b"--b\r\nContent-Type: text/plain\r\n\r\nx\r\n" for _ in range(1500))
    raw = (
        b"From: a@example.com\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n"
        + parts
        + b"--b--\r\n"
    )
    with pytest.raises(MailRejected, match="parts"):
        parse(raw)


def test_malformed_structures_never_raise() -> None:
    """Mutations of real samples: each parses or is refused with MailRejected."""
    rng = random.Random(3464)
    seeds = [p.read_bytes() for p in sorted(SAMPLES.glob("*.eml"))]
    seeds.append(_with_attachments().as_bytes())
    junk = [b"\x00", b"\xff\xfe", b"=?", b"?=", b"<", b">", b"\r\n\r\n", b"--", b";", b"\"",
            b"boundary=", b"Content-Type: multipart/mixed\r\n", b"charset=\xff", b"=\r\n"]  # fmt: skip
    for _ in range(400):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randint(1, 8)):
            at = rng.randrange(len(data))
            if rng.random() < 0.5:
                data[at : at + rng.randint(0, 40)] = rng.choice(junk)
            else:
                data[at : at + 1] = bytes([rng.randrange(256)])
        try:
            mail = parse(bytes(data))
        except MailRejected:
            continue
        assert isinstance(mail.text, str) and isinstance(mail.reply_text, str)


def test_header_injection_chars_are_flattened() -> None:
    mail = parse(b"From: a@example.com\r\nSubject: =?utf-8?q?Hi=0D=0ABcc:_x@y?=\r\n\r\nb")
    assert mail.subject == "Hi Bcc: x@y"
