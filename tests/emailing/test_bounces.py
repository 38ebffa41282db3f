"""Delivery status notifications (RFC 3464) from Postfix, Exchange and the RFC itself."""

from __future__ import annotations

from email.message import EmailMessage
from pathlib import Path

import pytest

from app.emailing.bounces import parse_bounce
from app.emailing.parse import parse_mail

SAMPLES = Path(__file__).parent / "samples"


def sample(name: str) -> bytes:
    return (SAMPLES / name).read_bytes()


def test_postfix_permanent_failure() -> None:
    bounce = parse_bounce(sample("postfix_bounce.eml"), "")
    assert bounce is not None
    assert bounce.action == "failed" and bounce.permanent
    assert bounce.reporting_mta == "mail.example.net"
    assert bounce.original_message_id == (
        "<6f1c2a9e0b3d4e5f8a7b6c5d4e3f2a1b@inbound.switchboard.localhost>"
    )
    (rcpt,) = bounce.recipients
    assert rcpt.final_recipient == "nobody@customer.example"
    assert rcpt.original_recipient == "Nobody@Customer.example"
    assert rcpt.status == "5.1.1"
    assert rcpt.diagnostic == (
        "550 5.1.1 <nobody@customer.example>: Recipient address rejected: "
        "User unknown in virtual mailbox table"
    )
    assert bounce.diagnostic == rcpt.diagnostic


def test_exchange_ndr_with_rfc822_headers() -> None:
    bounce = parse_bounce(sample("exchange_ndr.eml"), "")
    assert bounce is not None
    assert bounce.action == "failed" and bounce.permanent
    # From the text/rfc822-headers part (not the References of the report itself).
    assert bounce.original_message_id == (
        "<0b9f8e7d6c5b4a39281706f5e4d3c2b1@inbound.switchboard.localhost>"
    )
    (rcpt,) = bounce.recipients
    assert (rcpt.final_recipient, rcpt.status) == ("jane@contoso.com", "5.2.2")
    assert rcpt.diagnostic is not None and rcpt.diagnostic.startswith("554 5.2.2 mailbox full;")
    assert "QuotaExceededException" in rcpt.diagnostic


def test_transient_delay_is_not_permanent() -> None:
    bounce = parse_bounce(sample("postfix_delayed.eml"), "")
    assert bounce is not None
    assert bounce.action == "delayed" and not bounce.permanent
    assert bounce.recipients[0].status == "4.4.1"
    assert bounce.original_message_id == (
        "<77aa88bb99cc00dd11ee22ff33aa44bb@inbound.switchboard.localhost>"
    )


def test_rfc3464_example_failed_with_a_transient_status() -> None:
    """The RFC's own example: given up after five days, status 4.0.0: the message
    failed, but the address is not known to be bad."""
    bounce = parse_bounce(sample("rfc3464_timeout.eml"), "")
    assert bounce is not None
    assert bounce.action == "failed" and not bounce.permanent
    assert bounce.original_message_id == "<199407022110.RAA02812@CS.UTK.EDU>"
    assert bounce.recipients[0].diagnostic == "426 connection timed out"


def test_accepts_a_parsed_mail() -> None:
    parsed = parse_mail(sample("postfix_bounce.eml"), max_attachments=5, max_attachment_bytes=10**6)
    bounce = parse_bounce(parsed, "")
    assert bounce is not None and bounce.permanent


def _dsn_in_mixed(status: str = "5.0.0") -> bytes:
    """A report some servers send: a DSN part, but not labelled multipart/report."""
    return (
        "From: postmaster@relay.example\r\nTo: support@inbound.switchboard.localhost\r\n"
        "Subject: failure notice\r\nMIME-Version: 1.0\r\n"
        'Content-Type: multipart/mixed; boundary="zz"\r\n\r\n'
        "--zz\r\nContent-Type: text/plain\r\n\r\nSorry.\r\n"
        "--zz\r\nContent-Type: message/delivery-status\r\n\r\n"
        "Reporting-MTA: dns; relay.example\r\n\r\n"
        "Final-Recipient: rfc822; gone@customer.example\r\nAction: failed\r\n"
        f"Status: {status}\r\n\r\n"
        "--zz\r\nContent-Type: text/rfc822-headers\r\n\r\n"
        "Message-ID: <abc@inbound.switchboard.localhost>\r\n\r\n"
        "--zz--\r\n"
    ).encode()


def test_null_sender_with_a_dsn_part_is_a_bounce() -> None:
    bounce = parse_bounce(_dsn_in_mixed(), "")
    assert bounce is not None and bounce.permanent
    assert bounce.original_message_id == "<abc@inbound.switchboard.localhost>"
    assert parse_bounce(_dsn_in_mixed(), "<>") is not None


def test_unlabelled_dsn_from_a_real_sender_is_not_trusted() -> None:
    assert parse_bounce(_dsn_in_mixed(), "someone@customer.example") is None


def test_ordinary_mail_and_auto_replies_are_not_bounces() -> None:
    msg = EmailMessage()
    msg["From"] = "jane@customer.example"
    msg["Auto-Submitted"] = "auto-replied"
    msg["Subject"] = "Out of office"
    msg.set_content("I am away until Monday.")
    assert parse_bounce(msg.as_bytes(), "") is None  # null sender, but no report
    assert parse_bounce(b"From: a@b.example\r\n\r\nhello", "a@b.example") is None


def test_success_report_is_a_delivered_report() -> None:
    raw = (
        _dsn_in_mixed()
        .replace(b"Action: failed", b"Action: delivered")
        .replace(b"Status: 5.0.0", b"Status: 2.0.0")
    )
    bounce = parse_bounce(raw, "")
    assert bounce is not None
    assert bounce.action == "delivered" and not bounce.permanent


@pytest.mark.parametrize(
    ("fields", "permanent", "status"),
    [
        ("Action: failed\r\nDiagnostic-Code: smtp; 550 5.7.1 blocked", True, "5.7.1"),
        ("Action: failed\r\nDiagnostic-Code: smtp; 452 mailbox busy", False, None),
        ("Action: failed", True, None),
        ("Action: FAILED (gave up)\r\nStatus: 5.1.10 (no such user)", True, "5.1.10"),
    ],
)
def test_status_from_the_diagnostic_when_missing(
    fields: str, permanent: bool, status: str | None
) -> None:
    raw = _dsn_in_mixed().replace(b"Action: failed\r\nStatus: 5.0.0", fields.encode())
    bounce = parse_bounce(raw, "")
    assert bounce is not None
    assert bounce.permanent is permanent
    assert bounce.recipients[0].status == status


def test_report_without_recipient_fields_is_not_a_bounce() -> None:
    raw = _dsn_in_mixed().replace(b"Action: failed\r\n", b"")
    assert parse_bounce(raw, "") is None


def test_global_delivery_status_rfc6533() -> None:
    raw = _dsn_in_mixed().replace(b"message/delivery-status", b"message/global-delivery-status")
    bounce = parse_bounce(raw, "")
    assert bounce is not None
    assert bounce.recipients[0].final_recipient == "gone@customer.example"
    assert bounce.permanent
