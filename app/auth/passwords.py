"""Password hashing (argon2id) and strength rules."""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from zxcvbn import zxcvbn

MIN_LENGTH = 10
MAX_LENGTH = 128
MIN_SCORE = 3  # zxcvbn 0..4: "safely unguessable" starts at 3

_hasher = PasswordHasher()  # argon2id, RFC 9106 low-memory profile
# A real hash to verify against when the account does not exist, so that timing does
# not tell whether an email is registered.
_DUMMY_HASH = _hasher.hash("switchboard-timing-equaliser")


def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    try:
        return _hasher.verify(password_hash or _DUMMY_HASH, password) and bool(password_hash)
    except (VerificationError, InvalidHashError):
        return False


async def hash_password_async(password: str) -> str:
    """argon2 takes tens of milliseconds of CPU: keep it off the event loop."""
    return await asyncio.to_thread(hash_password, password)


async def verify_password_async(password_hash: str | None, password: str) -> bool:
    return await asyncio.to_thread(verify_password, password_hash, password)


def needs_rehash(password_hash: str) -> bool:
    return _hasher.check_needs_rehash(password_hash)


def password_problem(password: str, user_inputs: list[str]) -> str | None:
    """Why a password is too weak, or None when it is acceptable."""
    if len(password) < MIN_LENGTH:
        return f"must be at least {MIN_LENGTH} characters"
    if len(password) > MAX_LENGTH:
        return f"must be at most {MAX_LENGTH} characters"
    # zxcvbn's cost grows with length; MAX_LENGTH bounds it. zxcvbn refuses anything
    # over its own default of 72 characters with a ValueError, so pass our bound.
    result = zxcvbn(password, user_inputs=[u for u in user_inputs if u][:5], max_length=MAX_LENGTH)
    if result["score"] < MIN_SCORE:
        warning = result["feedback"].get("warning") or "too easy to guess"
        return f"is too weak ({warning.rstrip('.').lower()}); use a longer passphrase"
    return None
