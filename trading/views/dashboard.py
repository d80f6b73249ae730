"""The dashboard: today's P&L, open virtual positions, accounts needing attention, and its live part."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from accounts.decorators import approved_required
from trading import selectors


@approved_required
def dashboard(request: HttpRequest) -> HttpResponse:
    """Show today's P&L, open virtual positions and accounts that need attention."""
    summary = selectors.dashboard_summary(request.user)
    chart = {
        "labels": [result.session.isoformat() for result in summary.daily_pnl],
        "values": [float(result.realized_pnl) for result in summary.daily_pnl],
    }
    return render(request, "trading/dashboard.html", {"summary": summary, "daily_chart": chart})


@approved_required
@require_GET
def dashboard_live(request: HttpRequest) -> HttpResponse:
    """The dashboard's live part, polled by htmx: today's signals, positions, P&L and kill switches."""
    live = selectors.live_summary(user=request.user)
    return render(request, "trading/execution/_dashboard_live_content.html", {"live": live})
