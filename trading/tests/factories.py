"""factory_boy factories for the trading domain; they create through the services, as the product does."""

import factory

from justtrades.tests.factories import (
    UserFactory,  # the one user factory; trading tests import it from here too
)
from trading.models import BrokerAccount, Recorder, Trader
from trading.services.broker_accounts import broker_account_create
from trading.services.recorders import recorder_create
from trading.services.traders import trader_create


class BrokerAccountFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = BrokerAccount

    owner = factory.SubFactory(UserFactory)
    name = factory.Sequence(lambda n: f"Account {n}")
    kind = BrokerAccount.Kind.PAPER

    @classmethod
    def _create(cls, model_class, **kwargs):
        return broker_account_create(**kwargs)


class TradovateAccountFactory(BrokerAccountFactory):
    kind = BrokerAccount.Kind.TRADOVATE
    is_demo = True
    username = factory.Sequence(lambda n: f"tv-login-{n}")
    password = "tradovate-secret-password"


class RecorderFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Recorder

    owner = factory.SubFactory(UserFactory)
    name = factory.Sequence(lambda n: f"Strategy {n}")
    symbol = "ES"

    @classmethod
    def _create(cls, model_class, **kwargs):
        return recorder_create(**kwargs)


class TraderFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Trader

    recorder = factory.SubFactory(RecorderFactory)
    account = factory.SubFactory(BrokerAccountFactory, owner=factory.SelfAttribute("..recorder.owner"))

    @classmethod
    def _create(cls, model_class, **kwargs):
        kwargs.setdefault("owner", kwargs["account"].owner)
        return trader_create(**kwargs)
