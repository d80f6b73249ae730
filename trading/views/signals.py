"""The signal log and one signal: its raw body, what was read from it, the decisions and orders."""

from __future__ import annotations

from datetime import date

from django.db.models import Prefetch
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from accounts.decorators import approved_required
from trading import selectors
from trading.models import Signal
from trading.views.paging import int_or_none, paginate, query_without_page


@approved_required
@require_GET
def signal_list(request: HttpRequest) -> HttpResponse:
    """The signal log: every alert the user's recorders received, filtered by recorder, status and day."""
    errors = []
    recorders = list(selectors.recorders_for_filter(request.user))
    recorder_id = int_or_none(request.GET.get("recorder"))
    if recorder_id is not None and recorder_id not in {recorder.pk for recorder in recorders}:
        errors.append("That recorder is not one of yours: showing all recorders.")
        recorder_id = None
    status = request.GET.get("status") or None
    if status and status not in selectors.SIGNAL_STATUSES:
        errors.append(f"There is no signal status {status!r}: showing every status.")
        status = None
    day = None
    if request.GET.get("day"):
        try:
            day = date.fromisoformat(request.GET["day"])
        except ValueError:
            errors.append("The day must be a date such as 2026-03-01: showing every day.")
    signals = selectors.signal_list(user=request.user, recorder_id=recorder_id, status=status, day=day)
    signals = signals.prefetch_related(
        Prefetch(
            "decisions",
            queryset=selectors.decisions_for(request.user).only("pk", "signal_id", "status", "trader_id"),
            to_attr="visible_decisions",
        )
    )
    context = {
        "signals": paginate(request, signals),
        "recorders": recorders,
        "statuses": Signal.Status.choices,
        "selected": {"recorder": recorder_id, "status": status or "", "day": day.isoformat() if day else ""},
        "filter_errors": errors,
        "query": query_without_page(request),
    }
    return render(request, "trading/execution/signal_list.html", context)


@approved_required
@require_GET
def signal_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """One signal: its raw body, what was read from it, and the user's traders' decisions and orders."""
    signal = selectors.signal_detail(user=request.user, signal_id=pk)
    if signal is None:
        raise Http404("No such signal.")
    context = {"signal": signal, "is_recorder_owner": signal.recorder.owner_id == request.user.pk}
    return render(request, "trading/execution/signal_detail.html", context)
