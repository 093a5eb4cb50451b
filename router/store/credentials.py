"""How secrets are stored: agents' passwords as argon2id hashes (the encoded hash carries its own
parameters), bearer tokens as SHA-256. Passwords hashed with scrypt by older versions still
verify, and are replaced by an argon2id hash at the next successful login.

The hashing functions are slow on purpose and synchronous: callers run them in a thread."""

from __future__ import annotations

import hashlib
import secrets

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError

from router.observability.metrics import PASSWORD_VERIFICATIONS

# OWASP's argon2id minimum (19 MiB, 2 passes, 1 lane): a stored hash made with other
# parameters is rehashed with these at its next successful login.
HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1, type=Type.ID)
# An unknown username is checked against this, so it costs what a known one costs.
_DUMMY_HASH = HASHER.hash(secrets.token_urlsafe(16))


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def hash_password(password: str) -> str:
    return HASHER.hash(password)


def verify_password(password: str, stored: str | None) -> tuple[bool, bool]:
    """(matches, needs_rehash). `stored` None (no such user) does the same work and never
    matches."""
    if stored is not None and stored.startswith("scrypt$"):
        return _check_scrypt(password, stored), True
    PASSWORD_VERIFICATIONS.labels(scheme="argon2id").inc()
    try:
        HASHER.verify(stored or _DUMMY_HASH, password)
    except (VerificationError, InvalidHashError):
        return False, False
    return stored is not None, stored is not None and HASHER.check_needs_rehash(stored)


def _check_scrypt(password: str, stored: str) -> bool:
    PASSWORD_VERIFICATIONS.labels(scheme="scrypt").inc()
    try:
        _, salt_hex, digest_hex = stored.split("$")
        salt = bytes.fromhex(salt_hex)
    except ValueError:
        return False
    digest = hashlib.scrypt(password.encode(), salt=salt, n=2**14, r=8, p=1)
    return secrets.compare_digest(digest.hex(), digest_hex)
