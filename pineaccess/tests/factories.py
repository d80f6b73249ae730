"""factory_boy factories for Pine Script access tests (people come from justtrades.tests.factories)."""

import secrets

import factory

from justtrades.tests.factories import UserFactory
from pineaccess.models import PineScript, ScriptAccess


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
