"""Passwords: argon2id (argon2-cffi's defaults, RFC 9106 low-memory profile). Never logged."""

from __future__ import annotations

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError

MIN_LENGTH = 8

HASHER = PasswordHasher()


def check_strength(password: str) -> None:
    if len(password) < MIN_LENGTH:
        raise ValueError(f"a password needs at least {MIN_LENGTH} characters")


def hash_password(password: str) -> str:
    return HASHER.hash(password)


def verify_password(stored: str | None, password: str) -> bool:
    if not stored:
        return False
    try:
        return HASHER.verify(stored, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def needs_rehash(stored: str) -> bool:
    try:
        return HASHER.check_needs_rehash(stored)
    except InvalidHashError:
        return True


def dummy_verify(password: str) -> None:
    """Spend the time a real verification would (unknown user: no timing oracle)."""
    global _DUMMY
    if _DUMMY is None:
        _DUMMY = HASHER.hash("not a real password, only for timing")
    verify_password(_DUMMY, password)


_DUMMY: str | None = None
