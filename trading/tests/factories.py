"""factory_boy factories for the trading domain; they create through the services, as the product does."""

import factory
from django.contrib.auth import get_user_model

from trading.models import BrokerAccount, Recorder, Trader
from trading.services.broker_accounts import broker_account_create
from trading.services.recorders import recorder_create
from trading.services.traders import trader_create


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"trader{n}")
    email = factory.LazyAttribute(lambda user: f"{user.username}@example.com")
    approval_status = "approved"
    # Tests log in with force_login: no password hashing (Argon2 costs a tenth of a second per user).
    password = factory.PostGenerationMethodCall("set_unusable_password")

    @factory.post_generation
    def saved(self, create, extracted, **kwargs):
        if create:
            self.save()


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
