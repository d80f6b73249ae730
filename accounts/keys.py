"""One-time access keys as text: generation, normalisation of what people type, and hashing for storage."""

from __future__ import annotations

import hashlib
import hmac
import secrets

from django.conf import settings

# Crockford's base32: no I, L, O or U, so nothing reads as something else.
ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
PREFIX = "JT"
GROUPS = 4
GROUP_LENGTH = 5
KEY_LENGTH = GROUPS * GROUP_LENGTH
KEY_BITS = KEY_LENGTH * 5  # 100 bits, all of them random
EXAMPLE = f"{PREFIX}-" + "-".join(["XXXXX"] * GROUPS)

_ALIASES = str.maketrans({"O": "0", "I": "1", "L": "1"})
_IGNORED = str.maketrans("", "", " -_\t\r\n")
_HASH_SALT = b"justtrades.accounts.access-key"


def generate() -> str:
    """Return a new raw key such as JT-7K2QD-M9XVA-04RTN-HB5EC, from 100 random bits."""
    number = secrets.randbits(KEY_BITS)
    digits = []
    for _ in range(KEY_LENGTH):
        number, remainder = divmod(number, 32)
        digits.append(ALPHABET[remainder])
    return display("".join(reversed(digits)))


def display(canonical: str) -> str:
    """Format 20 canonical characters the way people see a key: JT-XXXXX-XXXXX-XXXXX-XXXXX."""
    groups = [canonical[i : i + GROUP_LENGTH] for i in range(0, KEY_LENGTH, GROUP_LENGTH)]
    return "-".join([PREFIX, *groups])


def normalize(text: str) -> str | None:
    """Return the 20 canonical characters of a typed key, or None when it cannot be a key.

    Case, spaces and dashes do not matter, the JT prefix is optional, and O, I and L read as 0, 1 and 1.
    """
    compact = str(text).upper().translate(_IGNORED)
    if len(compact) == KEY_LENGTH + len(PREFIX) and compact.startswith(PREFIX):
        compact = compact[len(PREFIX) :]
    if len(compact) != KEY_LENGTH:
        return None
    compact = compact.translate(_ALIASES)
    if any(character not in ALPHABET for character in compact):
        return None
    return compact


def digest(canonical: str, *, secret: str | bytes | None = None) -> str:
    """Return the stored form of a key: HMAC-SHA256 under a key derived from SECRET_KEY, in hex.

    The key carries 100 random bits, so a fast hash is enough; the secret means a copy of the database
    alone does not even allow checking a guess.
    """
    secret = settings.SECRET_KEY if secret is None else secret
    secret_bytes = secret.encode() if isinstance(secret, str) else secret
    derived = hashlib.sha256(_HASH_SALT + secret_bytes).digest()
    return hmac.new(derived, canonical.encode("ascii"), hashlib.sha256).hexdigest()


def candidate_digests(canonical: str) -> list[str]:
    """Return the digests under SECRET_KEY and SECRET_KEY_FALLBACKS, so rotating the secret keeps keys."""
    secrets_in_use = [settings.SECRET_KEY, *getattr(settings, "SECRET_KEY_FALLBACKS", [])]
    return [digest(canonical, secret=secret) for secret in secrets_in_use]
