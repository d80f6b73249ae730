"""The people of the trading tests: an owner, an approved stranger, a pending user and staff."""

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from trading.symbols import CONTRACTS
from trading.tests.factories import UserFactory


@pytest.fixture(autouse=True)
def _contract_table(request):
    """Put back the contract rows of the data migration when a transactional test flushed them.

    Tests with `transaction=True` (live servers, workers) end by emptying every table, migration data too.
    """
    marker = request.node.get_closest_marker("django_db")
    if marker is None:
        return
    transactional = marker.kwargs.get("transaction", False) or (marker.args and marker.args[0])
    request.getfixturevalue("transactional_db" if transactional else "db")
    from trading.models import ContractSpec

    if ContractSpec.objects.count() < len(CONTRACTS):
        ContractSpec.objects.bulk_create(
            [
                ContractSpec(
                    root=c.root,
                    name=c.name,
                    exchange=c.exchange,
                    tick_size=c.tick_size,
                    tick_value=c.tick_value,
                    point_value=c.point_value,
                    months=c.months,
                )
                for c in CONTRACTS.values()
            ],
            ignore_conflicts=True,
        )


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
