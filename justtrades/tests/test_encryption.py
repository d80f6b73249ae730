import io

import pytest
from cryptography.fernet import Fernet
from django.core.exceptions import ImproperlyConfigured

from justtrades.encryption import decrypt_text, encrypt_text, rotate_text


def test_encrypted_text_round_trips_and_hides_the_plain_value(settings):
    settings.FIELD_ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    stored = encrypt_text("tradovate-password")
    assert "tradovate-password" not in stored
    assert decrypt_text(stored) == "tradovate-password"


def test_rotation_moves_values_to_the_new_first_key_and_old_keys_still_decrypt(settings):
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.FIELD_ENCRYPTION_KEYS = [old]
    stored = encrypt_text("secret")
    settings.FIELD_ENCRYPTION_KEYS = [new, old]
    assert decrypt_text(stored) == "secret"
    rotated = rotate_text(stored)
    settings.FIELD_ENCRYPTION_KEYS = [new]
    assert decrypt_text(rotated) == "secret"
    with pytest.raises(ImproperlyConfigured, match="cannot be decrypted"):
        decrypt_text(stored)


def test_a_malformed_key_is_reported_clearly(settings):
    settings.FIELD_ENCRYPTION_KEYS = ["not-a-key"]
    with pytest.raises(ImproperlyConfigured, match="not a valid Fernet key"):
        encrypt_text("x")


@pytest.mark.django_db
def test_rotate_encryption_keys_command_reports_a_summary():
    from django.core.management import call_command

    out = io.StringIO()
    call_command("rotate_encryption_keys", "--dry-run", stdout=out)
    assert "would re-encrypt" in out.getvalue()
