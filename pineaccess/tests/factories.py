"""factory_boy factories for Pine Script access tests."""

import secrets

import factory
from django.contrib.auth import get_user_model

from pineaccess.models import PineScript, ScriptAccess


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"buyer{n}")
    email = factory.LazyAttribute(lambda user: f"{user.username}@example.com")
    password = factory.django.Password("a-long-test-password")
    approval_status = "approved"
    tradingview_username = factory.Sequence(lambda n: f"TraderJoe{n}")
    tradingview_verified = True


class StaffFactory(UserFactory):
    username = factory.Sequence(lambda n: f"staff{n}")
    is_staff = True
    is_superuser = True
    tradingview_username = None


class PineScriptFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = PineScript

    pine_id = factory.LazyFunction(lambda: f"PUB;{secrets.token_hex(16)}")
    name = factory.Sequence(lambda n: f"Strategy {n}")
    active = True


class ScriptAccessFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = ScriptAccess

    user = factory.SubFactory(UserFactory)
    script = factory.SubFactory(PineScriptFactory)
    tradingview_username = factory.LazyAttribute(lambda row: row.user.tradingview_username)
    status = ScriptAccess.Status.ACTIVE
