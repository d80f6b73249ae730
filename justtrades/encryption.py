"""Fernet encryption at rest for secrets kept in the database (broker credentials, session cookies)."""

from functools import cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models

_PREFIX = "fernet:"


@cache
def _fernet(keys: tuple[str, ...]) -> MultiFernet:
    """Build the MultiFernet for a key list: the first key encrypts, every key decrypts."""
    try:
        return MultiFernet([Fernet(key.encode()) for key in keys])
    except (ValueError, TypeError) as error:
        raise ImproperlyConfigured(
            "FIELD_ENCRYPTION_KEYS holds a key that is not a valid Fernet key (32 url-safe base64 bytes). "
            "Generate one with: python -c 'from cryptography.fernet import Fernet; "
            "print(Fernet.generate_key().decode())'."
        ) from error


def current_fernet() -> MultiFernet:
    """Return the MultiFernet for the configured FIELD_ENCRYPTION_KEYS."""
    return _fernet(tuple(settings.FIELD_ENCRYPTION_KEYS))


def encrypt_text(plain: str) -> str:
    """Encrypt text with the first key."""
    return _PREFIX + current_fernet().encrypt(plain.encode()).decode()


def decrypt_text(stored: str) -> str:
    """Decrypt text written by encrypt_text with any configured key."""
    if not stored.startswith(_PREFIX):
        raise ImproperlyConfigured("An encrypted field holds a value that was not written by JustTrades.")
    try:
        return current_fernet().decrypt(stored[len(_PREFIX) :].encode()).decode()
    except InvalidToken as error:
        raise ImproperlyConfigured(
            "A stored secret cannot be decrypted with any key in FIELD_ENCRYPTION_KEYS. Add the key it was "
            "encrypted with back to the list (keys rotate: new first, old after)."
        ) from error


def rotate_text(stored: str) -> str:
    """Re-encrypt a stored value with the first key."""
    return _PREFIX + current_fernet().rotate(stored[len(_PREFIX) :].encode()).decode()


class EncryptedTextField(models.TextField):
    """A text column whose value is encrypted in the database and plain in Python; empty stays empty."""

    description = "Text encrypted at rest with Fernet"

    def from_db_value(self, value, expression, connection):
        if value is None or value == "":
            return value
        return decrypt_text(value)

    def get_prep_value(self, value):
        value = super().get_prep_value(value)
        if value is None or value == "":
            return value
        return encrypt_text(value)

    def deconstruct(self):
        name, _path, args, kwargs = super().deconstruct()
        return name, "justtrades.encryption.EncryptedTextField", args, kwargs


def encrypted_fields() -> list[tuple[type[models.Model], list[str]]]:
    """List every model with encrypted fields and the names of those fields."""
    from django.apps import apps

    found = []
    for model in apps.get_models():
        names = [f.name for f in model._meta.concrete_fields if isinstance(f, EncryptedTextField)]
        if names:
            found.append((model, names))
    return found
