"""Tenant-scoped keys: the layout, what is refused, what is sanitised."""

from __future__ import annotations

import uuid

import pytest

from app.storage.base import (
    InvalidKey,
    check_key,
    content_disposition,
    key_belongs_to,
    safe_filename,
    tenant_key,
)

TENANT = uuid.UUID("0193a1b2-0000-7000-8000-000000000001")
OTHER = uuid.UUID("0193a1b2-0000-7000-8000-000000000002")


def test_tenant_key_layout() -> None:
    key = tenant_key(TENANT, "attachments", "conv-1", "invoice.pdf")
    assert key == f"tenants/{TENANT}/attachments/conv-1/invoice.pdf"
    assert tenant_key(str(TENANT), "recordings", "call.wav") == (
        f"tenants/{TENANT}/recordings/call.wav"
    )


@pytest.mark.parametrize(
    "parts",
    [
        ("..",),
        ("attachments", "..", "x.pdf"),
        ("attachments", "../../etc/passwd"),
        ("a/b", "x.pdf"),
        ("attachments", "..\\..\\boot.ini"),
        (".", "x.pdf"),
        ("", "x.pdf"),
        ("attachments", "x\x00.pdf"),
        ("attachments\n", "x.pdf"),
        ("attachments", "\u202egnp.exe"),
        ("a" * 256, "x.pdf"),
        (),
    ],
)
def test_tenant_key_refuses_traversal_and_control_characters(parts: tuple[str, ...]) -> None:
    with pytest.raises(InvalidKey):
        tenant_key(TENANT, *parts)


def test_tenant_key_needs_a_tenant_uuid() -> None:
    with pytest.raises(InvalidKey):
        tenant_key("../other", "x.pdf")


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        ("Résumé (final).PDF", "Resume_final.PDF"),
        ("my report 2024.docx", "my_report_2024.docx"),
        ("株式会社.png", "file.png"),
        ('a"b;c.txt', "a_b_c.txt"),
        (".htaccess", "file.htaccess"),
        ("_tGY-RQ.jpg", "tGY-RQ.jpg"),
        ("-rf.txt", "rf.txt"),
        ("archive.tar.gz", "archive.tar.gz"),
        ("noext", "noext"),
        ("weird.ext with space", "weird.ext_with_space"),
        ("x" * 300 + ".jpeg", "x" * 100 + ".jpeg"),
    ],
)
def test_filenames_keep_a_safe_subset_and_their_extension(given: str, expected: str) -> None:
    assert safe_filename(given) == expected
    key = tenant_key(TENANT, "attachments", given)
    assert key.rsplit("/", 1)[1] == expected


def test_key_belongs_to_its_tenant_only() -> None:
    key = tenant_key(TENANT, "attachments", "a.png")
    assert key_belongs_to(key, TENANT)
    assert key_belongs_to(key, str(TENANT))
    assert not key_belongs_to(key, OTHER)
    assert not key_belongs_to(f"tenants/{TENANT}", TENANT)  # the prefix, not an object
    assert not key_belongs_to(f"tenants/{TENANT}/../{OTHER}/a.png", TENANT)
    assert not key_belongs_to(f"tenants/{TENANT}//a.png", TENANT)
    assert not key_belongs_to(f"/tenants/{TENANT}/a.png", TENANT)
    assert not key_belongs_to(f"tenants/{TENANT.hex}/a.png", TENANT)  # not the canonical id
    assert not key_belongs_to(f"tenants/{TENANT}/a.png", "not-a-uuid")


def test_check_key_refuses_absolute_and_oversized_keys() -> None:
    for bad in ("/etc/passwd", "a//b", "a/", "", "a/" * 600 + "b"):
        with pytest.raises(InvalidKey):
            check_key(bad)


def test_content_disposition_cannot_break_out_of_the_header() -> None:
    value = content_disposition('evil"\r\nSet-Cookie: x=1; .pdf')
    assert "\r" not in value and "\n" not in value
    assert value.startswith("attachment; filename=\"evil_Set-Cookie_x_1.pdf\"; filename*=UTF-8''")
    assert content_disposition("Übersicht.pdf") == (
        "attachment; filename=\"Ubersicht.pdf\"; filename*=UTF-8''%C3%9Cbersicht.pdf"
    )
