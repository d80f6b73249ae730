"""Orders sent to the user's broker accounts, and the positions and P&L they made."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from accounts.decorators import approved_required
from trading import selectors
from trading.models import BrokerAccount, Order
from trading.views.paging import int_or_none, paginate, query_without_page


@approved_required
@require_GET
def order_list(request: HttpRequest) -> HttpResponse:
    """Every order sent (or about to be sent) to the user's broker accounts."""
    accounts = list(BrokerAccount.objects.owned_by(request.user).order_by("name", "pk"))
    account_id = int_or_none(request.GET.get("account"))
    if account_id is not None and account_id not in {account.pk for account in accounts}:
        account_id = None
    status = request.GET.get("status") or None
    if status not in selectors.ORDER_STATUSES:
        status = None
    orders = selectors.order_list(user=request.user, account_id=account_id, status=status)
    context = {
        "orders": paginate(request, orders),
        "accounts": accounts,
        "statuses": Order.Status.choices,
        "selected": {"account": account_id, "status": status or ""},
        "query": query_without_page(request),
    }
    return render(request, "trading/execution/order_list.html", context)


@approved_required
@require_GET
def position_list(request: HttpRequest) -> HttpResponse:
    """Open positions at the last known prices, every contract's realized P&L, and the kill switches."""
    context = {
        "open_positions": selectors.open_positions(user=request.user),
        "positions": selectors.position_list(user=request.user),
        "session_pnl": selectors.session_pnl(user=request.user),
        "killswitches": selectors.killswitch_states(user=request.user),
        "accounts": list(BrokerAccount.objects.owned_by(request.user).order_by("name", "pk")),
    }
    return render(request, "trading/execution/position_list.html", context)
