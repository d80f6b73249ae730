"""factory_boy factories for accounts tests."""

import secrets

import factory
from django.utils import timezone

from accounts import keys
from accounts.models import AccessKey, User
from pineaccess.models import PineScript


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = User
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda user: f"{user.username}@example.com")
    password = factory.django.Password("a-long-test-password")
    approval_status = User.ApprovalStatus.APPROVED
    tradingview_username = factory.Sequence(lambda n: f"Trader_{n}")
    tradingview_verified = True


class StaffFactory(UserFactory):
    is_staff = True
    is_superuser = True
    tradingview_username = None


class PineScriptFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = PineScript

    pine_id = factory.LazyFunction(lambda: f"PUB;{secrets.token_hex(16)}")
    name = factory.Sequence(lambda n: f"Strategy {n}")
    active = True


class AccessKeyFactory(factory.django.DjangoModelFactory):
    """A stored key whose raw form nobody knows; the access_keys_create service gives one you can type."""

    class Meta:
        model = AccessKey

    key_hash = factory.LazyFunction(lambda: keys.digest(keys.normalize(keys.generate())))
    note = factory.Sequence(lambda n: f"order {n}")


class RedeemedAccessKeyFactory(AccessKeyFactory):
    redeemed_by = factory.SubFactory(UserFactory)
    redeemed_at = factory.LazyFunction(timezone.now)
