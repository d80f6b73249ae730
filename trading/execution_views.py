"""Execution pages: the signal log, one signal, orders, positions, the live dashboard part, kill switches."""

from __future__ import annotations

from datetime import date

from django.contrib import messages
from django.core.paginator import Paginator
from django.db.models import Prefetch
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_POST

from accounts.decorators import approved_required
from trading import execution_selectors
from trading.models import BrokerAccount, Order, Signal
from trading.services import killswitches

PAGE_SIZE = 50


def _page(request: HttpRequest, items):
    return Paginator(items, PAGE_SIZE).get_page(request.GET.get("page"))


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value else None
    except ValueError:
        return None


def _query_without_page(request: HttpRequest) -> str:
    query = request.GET.copy()
    query.pop("page", None)
    return query.urlencode()


@approved_required
@require_GET
def signal_list(request: HttpRequest) -> HttpResponse:
    """The signal log: every alert the user's recorders received, filtered by recorder, status and day."""
    errors = []
    recorders = list(execution_selectors.recorders_for_filter(request.user))
    recorder_id = _int(request.GET.get("recorder"))
    if recorder_id is not None and recorder_id not in {recorder.pk for recorder in recorders}:
        errors.append("That recorder is not one of yours: showing all recorders.")
        recorder_id = None
    status = request.GET.get("status") or None
    if status and status not in execution_selectors.SIGNAL_STATUSES:
        errors.append(f"There is no signal status {status!r}: showing every status.")
        status = None
    day = None
    if request.GET.get("day"):
        try:
            day = date.fromisoformat(request.GET["day"])
        except ValueError:
            errors.append("The day must be a date such as 2026-03-01: showing every day.")
    signals = execution_selectors.signal_list(
        user=request.user, recorder_id=recorder_id, status=status, day=day
    )
    signals = signals.prefetch_related(
        Prefetch(
            "decisions",
            queryset=execution_selectors.decisions_for(request.user).only(
                "pk", "signal_id", "status", "trader_id"
            ),
            to_attr="visible_decisions",
        )
    )
    context = {
        "signals": _page(request, signals),
        "recorders": recorders,
        "statuses": Signal.Status.choices,
        "selected": {"recorder": recorder_id, "status": status or "", "day": day.isoformat() if day else ""},
        "filter_errors": errors,
        "query": _query_without_page(request),
    }
    return render(request, "trading/execution/signal_list.html", context)


@approved_required
@require_GET
def signal_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """One signal: its raw body, what was read from it, and the user's traders' decisions and orders."""
    signal = execution_selectors.signal_detail(user=request.user, signal_id=pk)
    if signal is None:
        raise Http404("No such signal.")
    context = {"signal": signal, "is_recorder_owner": signal.recorder.owner_id == request.user.pk}
    return render(request, "trading/execution/signal_detail.html", context)


@approved_required
@require_GET
def order_list(request: HttpRequest) -> HttpResponse:
    """Every order sent (or about to be sent) to the user's broker accounts."""
    accounts = list(BrokerAccount.objects.owned_by(request.user).order_by("name", "pk"))
    account_id = _int(request.GET.get("account"))
    if account_id is not None and account_id not in {account.pk for account in accounts}:
        account_id = None
    status = request.GET.get("status") or None
    if status not in execution_selectors.ORDER_STATUSES:
        status = None
    orders = execution_selectors.order_list(user=request.user, account_id=account_id, status=status)
    context = {
        "orders": _page(request, orders),
        "accounts": accounts,
        "statuses": Order.Status.choices,
        "selected": {"account": account_id, "status": status or ""},
        "query": _query_without_page(request),
    }
    return render(request, "trading/execution/order_list.html", context)


@approved_required
@require_GET
def position_list(request: HttpRequest) -> HttpResponse:
    """Open positions at the last known prices, every contract's realized P&L, and the kill switches."""
    context = {
        "open_positions": execution_selectors.open_positions(user=request.user),
        "positions": execution_selectors.position_list(user=request.user),
        "session_pnl": execution_selectors.session_pnl(user=request.user),
        "killswitches": execution_selectors.killswitch_states(user=request.user),
        "accounts": list(BrokerAccount.objects.owned_by(request.user).order_by("name", "pk")),
    }
    return render(request, "trading/execution/position_list.html", context)


@approved_required
@require_GET
def dashboard_live(request: HttpRequest) -> HttpResponse:
    """The dashboard's live part, polled by htmx: today's signals, positions, P&L and kill switches."""
    live = execution_selectors.live_summary(user=request.user)
    return render(request, "trading/execution/_dashboard_live_content.html", {"live": live})


@approved_required
@require_POST
def killswitch_toggle(request: HttpRequest) -> HttpResponse:
    """Turn a kill switch on or off: the user's own, one of their accounts', or (staff) everyone's."""
    scope = request.POST.get("scope", "user")
    engaged = request.POST.get("engaged") == "on"
    reason = (request.POST.get("reason") or "").strip()[:200]
    if scope == "account":
        account = get_object_or_404(
            BrokerAccount.objects.owned_by(request.user), pk=_int(request.POST.get("account"))
        )
        killswitches.killswitch_set(engaged=engaged, account=account, changed_by=request.user, reason=reason)
        subject = f"Orders to {account.name}"
    elif scope == "global":
        if not request.user.is_staff:
            raise Http404("Only staff can stop everyone's trading.")
        killswitches.killswitch_set(engaged=engaged, changed_by=request.user, reason=reason)
        subject = "Orders for every user"
    else:
        killswitches.killswitch_set(
            engaged=engaged, user=request.user, changed_by=request.user, reason=reason
        )
        subject = "All your orders"
    if engaged:
        messages.warning(
            request, f"Kill switch on. {subject} are stopped; signals are still stored and shown."
        )
    else:
        messages.success(request, f"Kill switch off. {subject} are sent again from the next signal.")
    if request.headers.get("HX-Request"):
        live = execution_selectors.live_summary(user=request.user)
        return render(request, "trading/execution/_dashboard_live_content.html", {"live": live})
    target = request.POST.get("next") or ""
    if not url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        target = reverse("position-list")
    return redirect(target)
