"""The paper broker: fills at the last price, resting orders crossed by later prices, OCO, positions, P&L."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest
from django.db import connection, connections
from django.utils import timezone

from trading.brokers.base import BracketLeg, BracketRequest, OrderRejected, OrderRequest, OrderStatus
from trading.brokers.paper import PAPER_STARTING_CASH, PaperBroker, paper_account_id, paper_price_update
from trading.models import LastPrice, PaperFill, PaperOrder, PaperPosition
from trading.risk import session_key
from trading.tests.factories import BrokerAccountFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def account(owner):
    return BrokerAccountFactory(owner=owner, name="Paper one")


@pytest.fixture
def broker(account):
    return PaperBroker(account)


@pytest.fixture
def sub(account) -> str:
    return paper_account_id(account.pk)


def price(owner, value: str, symbol: str = "ES") -> list[int]:
    """A new market price for the owner: stored, then crossed with their resting orders."""
    LastPrice.objects.update_or_create(
        owner=owner, symbol=symbol, defaults={"price": Decimal(value), "updated_at": timezone.now()}
    )
    return paper_price_update(owner_id=owner.pk, symbol=symbol, price=Decimal(value))


def order(
    sub: str,
    action: str = "Buy",
    order_type: str = "Market",
    quantity: int = 1,
    client_id: str = "",
    **prices,
):
    return OrderRequest(
        client_id=client_id or f"test-{action}-{order_type}-{quantity}-{sorted(prices.items())}",
        account_id=sub,
        account_spec="Paper",
        symbol="ES1!",
        action=action,
        order_type=order_type,
        quantity=quantity,
        **{name: Decimal(value) for name, value in prices.items()},
    )


def bracket(sub: str, action: str = "Buy", quantity: int = 1, take_profit: str = "5002", stop: str = "4998"):
    return BracketRequest(
        entry=order(sub, action, quantity=quantity, client_id=f"entry-{action}-{quantity}"),
        take_profit=BracketLeg(
            client_id=f"tp-{action}-{quantity}", order_type="Limit", price=Decimal(take_profit)
        ),
        stop_loss=BracketLeg(
            client_id=f"sl-{action}-{quantity}", order_type="Stop", stop_price=Decimal(stop)
        ),
    )


def position(broker, sub) -> tuple[int, Decimal | None]:
    positions = broker.list_positions(sub)
    return (positions[0].quantity, positions[0].avg_price) if positions else (0, None)


def status_of(broker_order_id: str) -> str:
    return PaperOrder.objects.get(pk=int(broker_order_id)).status


def test_the_paper_account_has_one_trading_account_named_as_the_domain_creates_it(broker, account):
    [sub] = broker.list_accounts()
    assert sub.id == paper_account_id(account.pk)
    assert account.subaccounts.get().broker_id == sub.id


def test_a_market_order_fills_at_the_last_price(broker, sub, owner):
    price(owner, "5000.25")

    placed = broker.place_order(order(sub, quantity=2))

    assert status_of(placed.broker_order_id) == "filled"
    assert position(broker, sub) == (2, Decimal("5000.25"))
    [fill] = broker.list_fills(sub)
    assert (fill.broker_order_id, fill.quantity, fill.price, fill.action) == (
        placed.broker_order_id,
        2,
        Decimal("5000.25"),
        "Buy",
    )


def test_a_market_order_without_any_known_price_is_refused_and_leaves_nothing(broker, sub):
    with pytest.raises(OrderRejected) as refused:
        broker.place_order(order(sub))

    assert refused.value.reason == "NoQuote"
    assert "/api/prices/" in refused.value.text
    assert PaperOrder.objects.count() == 0


def test_a_bracket_take_profit_fill_cancels_the_stop_and_realizes_the_profit(broker, sub, owner):
    price(owner, "5000")
    placed = broker.place_bracket(bracket(sub))
    assert status_of(placed.take_profit_id) == status_of(placed.stop_loss_id) == "working"

    assert price(owner, "5001.75") == []  # not there yet
    touched = price(owner, "5002.50")

    assert touched == [broker.broker_account_id]
    assert status_of(placed.take_profit_id) == "filled"
    assert PaperOrder.objects.get(pk=placed.take_profit_id).fill_price == Decimal(
        "5002"
    )  # its limit, not better
    assert status_of(placed.stop_loss_id) == "cancelled"
    row = PaperPosition.objects.get()
    assert (row.quantity, row.avg_price, row.realized_pnl) == (0, None, Decimal("100.00"))


def test_a_bracket_stop_fill_cancels_the_take_profit_and_realizes_the_loss(broker, sub, owner):
    price(owner, "5000")
    placed = broker.place_bracket(bracket(sub, "Sell", quantity=2, take_profit="4990", stop="5004"))

    price(owner, "5005.25")  # gapped through the stop: fills at the price that triggered it

    assert status_of(placed.stop_loss_id) == "filled"
    assert status_of(placed.take_profit_id) == "cancelled"
    assert PaperPosition.objects.get().realized_pnl == Decimal("-525.00")  # -5.25 points x 2 x $50


def test_bracket_legs_wait_for_an_entry_that_has_not_filled(broker, sub, owner):
    price(owner, "5000")
    request = BracketRequest(
        entry=order(sub, "Buy", "Limit", client_id="entry", price="4995"),
        take_profit=BracketLeg(client_id="tp", order_type="Limit", price=Decimal("5000")),
        stop_loss=BracketLeg(client_id="sl", order_type="Stop", stop_price=Decimal("4990")),
    )
    placed = broker.place_bracket(request)
    assert [status_of(placed.take_profit_id), status_of(placed.stop_loss_id)] == ["pending", "pending"]

    price(owner, "4995")

    assert status_of(placed.entry_id) == "filled"
    assert [status_of(placed.take_profit_id), status_of(placed.stop_loss_id)] == ["working", "working"]


def test_a_marketable_limit_fills_at_the_market_and_a_resting_one_at_its_limit(broker, sub, owner):
    price(owner, "5000")
    marketable = broker.place_order(order(sub, "Buy", "Limit", price="5003"))
    resting = broker.place_order(order(sub, "Buy", "Limit", price="4990"))

    price(owner, "4985")

    assert PaperOrder.objects.get(pk=marketable.broker_order_id).fill_price == Decimal("5000")
    assert PaperOrder.objects.get(pk=resting.broker_order_id).fill_price == Decimal("4990")
    assert position(broker, sub) == (2, Decimal("4995"))


def test_a_trailing_stop_follows_the_price_and_fills_when_it_turns(broker, sub, owner):
    price(owner, "5000")
    broker.place_order(order(sub))
    trailing = broker.place_order(
        order(sub, "Sell", "TrailingStop", client_id="trail", stop_price="4998", trail_distance="2")
    )

    price(owner, "5006")
    assert PaperOrder.objects.get(pk=trailing.broker_order_id).stop_price == Decimal("5004")
    price(owner, "5003")  # below the trailed stop

    row = PaperOrder.objects.get(pk=trailing.broker_order_id)
    assert (row.status, row.fill_price) == ("filled", Decimal("5003"))
    assert PaperPosition.objects.get().realized_pnl == Decimal("150.00")


def test_adding_averages_the_price_and_a_partial_exit_keeps_it(broker, sub, owner):
    price(owner, "5000")
    broker.place_order(order(sub, client_id="a"))
    price(owner, "5010")
    broker.place_order(order(sub, client_id="b"))
    assert position(broker, sub) == (2, Decimal("5005"))

    broker.place_order(order(sub, "Sell", client_id="c"))

    assert position(broker, sub) == (1, Decimal("5005"))
    assert PaperPosition.objects.get().realized_pnl == Decimal("250.00")


def test_liquidation_cancels_the_open_orders_and_closes_at_the_last_price(broker, sub, owner):
    price(owner, "5000")
    placed = broker.place_bracket(bracket(sub, quantity=3))
    price(owner, "5001")

    closing = broker.liquidate_position(sub, "ESZ6")

    assert closing is not None
    assert status_of(closing.broker_order_id) == "filled"
    assert {status_of(placed.take_profit_id), status_of(placed.stop_loss_id)} == {"cancelled"}
    assert position(broker, sub) == (0, None)
    assert PaperPosition.objects.get().realized_pnl == Decimal("150.00")
    assert broker.liquidate_position(sub, "ES") is None  # already flat: nothing is sent, never a short


def test_cancel_removes_an_entry_with_its_waiting_legs_and_refuses_a_filled_order(broker, sub, owner):
    price(owner, "5000")
    filled = broker.place_order(order(sub))
    request = BracketRequest(
        entry=order(sub, "Buy", "Limit", client_id="entry", price="4990"),
        take_profit=BracketLeg(client_id="tp", order_type="Limit", price=Decimal("5000")),
    )
    placed = broker.place_bracket(request)

    broker.cancel_order(placed.entry_id)

    assert {status_of(placed.entry_id), status_of(placed.take_profit_id)} == {"cancelled"}
    with pytest.raises(OrderRejected, match="filled"):
        broker.cancel_order(filled.broker_order_id)


def test_a_modified_order_fills_once_it_becomes_marketable(broker, sub, owner):
    price(owner, "5000")
    resting = broker.place_order(order(sub, "Sell", "Limit", price="5010"))

    broker.modify_order(
        resting.broker_order_id, quantity=2, price=Decimal("4999"), stop_price=None, order_type="Limit"
    )

    row = PaperOrder.objects.get(pk=resting.broker_order_id)
    assert (row.status, row.quantity, row.fill_price) == ("filled", 2, Decimal("5000"))


def test_a_client_id_is_accepted_once(broker, sub, owner):
    price(owner, "5000")
    broker.place_order(order(sub, client_id="jt-1"))

    with pytest.raises(OrderRejected, match="already exists"):
        broker.place_order(order(sub, client_id="jt-1"))
    assert PaperOrder.objects.count() == 1
    assert broker.find_order_by_client_id(sub, "jt-1").status is OrderStatus.FILLED
    assert broker.find_order_by_client_id(sub, "jt-2") is None


def test_another_accounts_id_is_refused(broker, owner):
    other = BrokerAccountFactory(owner=owner)
    price(owner, "5000")

    with pytest.raises(OrderRejected) as refused:
        broker.place_order(order(paper_account_id(other.pk)))
    assert refused.value.reason == "Unauthorized"


def test_an_unknown_contract_is_refused(broker, sub, owner):
    price(owner, "5000")
    request = OrderRequest(
        client_id="x",
        account_id=sub,
        account_spec="Paper",
        symbol="ZZTOP",
        action="Buy",
        order_type="Market",
        quantity=1,
    )

    with pytest.raises(OrderRejected) as refused:
        broker.place_order(request)
    assert refused.value.reason == "InvalidContract"


def test_a_price_crosses_only_its_owners_orders(broker, sub, owner):
    stranger = UserFactory()
    theirs = PaperBroker(BrokerAccountFactory(owner=stranger))
    their_sub = theirs.list_accounts()[0].id
    price(owner, "5000")
    price(stranger, "5000")
    mine = broker.place_order(order(sub, "Buy", "Limit", price="4990"))
    other = theirs.place_order(order(their_sub, "Buy", "Limit", price="4990"))

    price(owner, "4989")

    assert status_of(mine.broker_order_id) == "filled"
    assert status_of(other.broker_order_id) == "working"


def test_a_price_touches_only_the_books_it_reaches_however_many_the_owner_has(
    owner, django_assert_num_queries
):
    price(owner, "5000")
    books = [PaperBroker(BrokerAccountFactory(owner=owner)) for _ in range(5)]
    for number, book in enumerate(books):
        sub = book.list_accounts()[0].id
        book.place_bracket(bracket(sub, take_profit=str(5010 + number), stop=str(4990 - number)))
    trailing = PaperBroker(BrokerAccountFactory(owner=owner))
    trailing_sub = trailing.list_accounts()[0].id
    trailing.place_order(order(trailing_sub, "Buy"))
    stop = trailing.place_order(
        order(trailing_sub, "Sell", "TrailingStop", client_id="trail", stop_price="4990", trail_distance="10")
    )

    with django_assert_num_queries(1):  # between every stop and every target: nothing to lock or fill
        assert paper_price_update(owner_id=owner.pk, symbol="ES", price=Decimal("5000")) == []

    price(owner, "5005")  # moves the trailing stop only
    assert PaperOrder.objects.get(pk=int(stop.broker_order_id)).stop_price == Decimal("4995")
    assert price(owner, "5012") == [book.broker_account_id for book in books[:3]]  # the first three targets


def test_the_balance_keeps_realized_pnl_per_session_and_values_the_open_position(broker, sub, owner):
    price(owner, "5000")
    broker.place_order(order(sub, quantity=3, client_id="open"))
    price(owner, "5004")
    broker.place_order(order(sub, "Sell", client_id="yesterday"))
    PaperFill.objects.filter(order__client_id="yesterday").update(
        session=session_key(timezone.now()).replace(year=2020)
    )
    broker.place_order(order(sub, "Sell", client_id="today"))
    price(owner, "5001")

    balance = broker.account_balance(sub)

    assert balance.realized_pnl == Decimal("200.00")  # this session's only
    assert balance.cash_balance == PAPER_STARTING_CASH + Decimal("400.00")  # everything realized
    assert balance.open_pnl == Decimal("50.00")  # 1 contract, 1 point above its average
    assert balance.net_liquidation == balance.cash_balance + Decimal("50.00")


def test_orders_and_fills_are_reported_newest_first_with_our_client_ids(broker, sub, owner):
    price(owner, "5000")
    first = broker.place_order(order(sub, client_id="first"))
    second = broker.place_order(order(sub, "Sell", client_id="second"))

    assert [item.broker_order_id for item in broker.list_orders(sub)] == [
        second.broker_order_id,
        first.broker_order_id,
    ]
    assert [item.client_id for item in broker.list_orders(sub)] == ["second", "first"]
    assert [fill.broker_order_id for fill in broker.list_fills(sub)] == [
        second.broker_order_id,
        first.broker_order_id,
    ]


@pytest.mark.django_db(transaction=True)
def test_two_prices_crossing_the_same_book_at_once_fill_each_order_once(owner):
    """A race of two price ticks on one resting order: the book's row lock lets only one of them fill it."""
    if connection.vendor == "sqlite" and "memory" in str(connection.settings_dict["NAME"]):
        pytest.skip("An in-memory SQLite database cannot be shared by threads.")
    account = BrokerAccountFactory(owner=owner)
    broker = PaperBroker(account)
    sub = paper_account_id(account.pk)
    price(owner, "5000")
    for number in range(5):
        broker.place_order(order(sub, "Buy", "Limit", client_id=f"rest-{number}", price="4990"))
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def tick() -> None:
        try:
            barrier.wait()
            paper_price_update(owner_id=owner.pk, symbol="ES", price=Decimal("4989"))
        except BaseException as error:
            errors.append(error)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=tick) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert errors == []
    assert PaperFill.objects.count() == 5
    assert PaperPosition.objects.get().quantity == 5
