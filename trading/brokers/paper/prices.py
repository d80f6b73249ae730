"""A new market price crossed with a user's resting paper orders."""

from __future__ import annotations

from decimal import Decimal

from django.db import transaction

from trading.brokers.paper.book import PaperBook, paper_contracts, position_lock, reached_by
from trading.brokers.paper.broker import PaperBroker
from trading.models import (
    BrokerAccount,
    PaperOrder,
)
from trading.symbols import SymbolError, symbol_root


def paper_price_update(*, owner_id: int, symbol: str, price: Decimal) -> list[int]:
    """Cross the owner's resting paper orders in `symbol` with a new price; return the accounts that filled.

    Only the books with an order the price reaches are locked and matched, each in its own short transaction;
    the caller stores the price first (LastPrice).
    """
    try:
        root = symbol_root(symbol, paper_contracts().keys())
    except SymbolError:
        return []
    books = (
        PaperOrder.objects.filter(
            reached_by(price),
            broker_account__owner_id=owner_id,
            broker_account__kind=BrokerAccount.Kind.PAPER,
            root=root,
            status=PaperOrder.Status.WORKING,
        )
        .values_list("broker_account_id", "account_id")
        .distinct()
        .order_by("broker_account_id", "account_id")
    )
    touched: list[int] = []
    accounts = {
        account.pk: account for account in BrokerAccount.objects.filter(pk__in={pk for pk, _ in books})
    }
    for broker_account_id, account_id in books:
        account = accounts.get(broker_account_id)
        if account is None:
            continue
        broker = PaperBroker(account)
        book = PaperBook(broker_account_id, account_id, root)
        with transaction.atomic():
            position = position_lock(book)
            working = PaperOrder.objects.filter(
                broker_account_id=broker_account_id,
                account_id=account_id,
                root=root,
                status=PaperOrder.Status.WORKING,
            ).order_by("pk")
            if (
                broker.matcher(book, position).run(list(working), price, arriving=False)
                and broker_account_id not in touched
            ):
                touched.append(broker_account_id)
    return touched
