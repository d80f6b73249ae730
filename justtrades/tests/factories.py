"""The people every app's tests create: one user factory and one staff factory, shared by all apps.

App factories (scripts, keys, broker accounts, ...) live in each app's tests/factories.py and use these
for their owners. Password hashing is made fast for every test by the root conftest.
"""

import factory
from django.contrib.auth import get_user_model

# Every factory-made person has this password, so tests can log in through the real form.
PASSWORD = "a-long-test-password"


class UserFactory(factory.django.DjangoModelFactory):
    """An approved user with a verified TradingView username; asking twice for a username gives one user."""

    class Meta:
        model = get_user_model()
        django_get_or_create = ("username",)
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda user: f"{user.username}@example.com")
    password = factory.django.Password(PASSWORD)
    approval_status = "approved"
    tradingview_username = factory.Sequence(lambda n: f"Trader_{n}")
    tradingview_verified = True


class StaffFactory(UserFactory):
    """An operator: staff and superuser, with no TradingView username of their own."""

    username = factory.Sequence(lambda n: f"staff{n}")
    is_staff = True
    is_superuser = True
    tradingview_username = None
