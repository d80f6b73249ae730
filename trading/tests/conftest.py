"""The people of the trading tests: an owner, an approved stranger, a pending user and staff."""

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from trading.tests.factories import UserFactory


@pytest.fixture
def owner(db):
    return UserFactory(username="olivia")


@pytest.fixture
def stranger(db):
    return UserFactory(username="sam")


@pytest.fixture
def pending_user(db):
    return UserFactory(username="pat", approval_status="pending")


@pytest.fixture
def staff(db):
    return UserFactory(username="stella", is_staff=True, is_superuser=True)


@pytest.fixture
def owner_client(client, owner):
    client.force_login(owner)
    return client


@pytest.fixture
def stranger_client(client, stranger):
    client.force_login(stranger)
    return client


@pytest.fixture
def owner_api(owner):
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=owner).key}")
    return api


@pytest.fixture
def stranger_api(stranger):
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=stranger).key}")
    return api
