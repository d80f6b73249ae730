"""factory_boy factories for accounts tests: access keys (people come from justtrades.tests.factories)."""

import factory
from django.utils import timezone

from accounts import keys
from accounts.models import AccessKey
from justtrades.tests.factories import UserFactory


class AccessKeyFactory(factory.django.DjangoModelFactory):
    """A stored key whose raw form nobody knows; the access_keys_create service gives one you can type."""

    class Meta:
        model = AccessKey

    key_hash = factory.LazyFunction(lambda: keys.digest(keys.normalize(keys.generate())))
    note = factory.Sequence(lambda n: f"order {n}")


class RedeemedAccessKeyFactory(AccessKeyFactory):
    redeemed_by = factory.SubFactory(UserFactory)
    redeemed_at = factory.LazyFunction(timezone.now)
