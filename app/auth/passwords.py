"""Password hashing (argon2id) and strength rules."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from zxcvbn import zxcvbn

if TYPE_CHECKING:
    from app.config import Settings

MIN_LENGTH = 10
MAX_LENGTH = 128
MIN_SCORE = 3  # zxcvbn 0..4: "safely unguessable" starts at 3


class _Argon2:
    """One argon2id cost, and a dummy hash made at that cost: verified when the account
    does not exist, so that timing does not tell whether an email is registered."""

    def __init__(self, settings: Settings) -> None:
        self.hasher = PasswordHasher(
            time_cost=settings.argon2_time_cost,
            memory_cost=settings.argon2_memory_cost,
            parallelism=settings.argon2_parallelism,
        )
        self._dummy_hash: str | None = None

    @property
    def dummy_hash(self) -> str:
        # Made on first use, not at import: it costs as much as any hash.
        if self._dummy_hash is None:
            self._dummy_hash = self.hasher.hash("switchboard-timing-equaliser")
        return self._dummy_hash


_current: _Argon2 | None = None


def configure(settings: Settings) -> None:
    """Hash at the argon2 cost of ``settings`` from now on (the app's lifespan calls
    this; the cost is process-wide). Hashes made at another cost still verify, since
    argon2 keeps its parameters in the hash, and needs_rehash() reports them so that
    the next login rehashes at this cost."""
    global _current
    _current = _Argon2(settings)


def _argon2() -> _Argon2:
    global _current
    if _current is None:
        # Not configured (a CLI command that runs no app): the environment's settings.
        from app.config import get_settings

        _current = _Argon2(get_settings())
    return _current


def hash_password(password: str) -> str:
    return _argon2().hasher.hash(password)


def verify_password(password_hash: str | None, password: str) -> bool:
    argon2 = _argon2()
    try:
        return argon2.hasher.verify(password_hash or argon2.dummy_hash, password) and bool(
            password_hash
        )
    except (VerificationError, InvalidHashError):
        return False


async def hash_password_async(password: str) -> str:
    """argon2 takes tens of milliseconds of CPU: keep it off the event loop."""
    return await asyncio.to_thread(hash_password, password)


async def verify_password_async(password_hash: str | None, password: str) -> bool:
    return await asyncio.to_thread(verify_password, password_hash, password)


def needs_rehash(password_hash: str) -> bool:
    return _argon2().hasher.check_needs_rehash(password_hash)


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
