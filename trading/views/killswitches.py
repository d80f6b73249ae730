"""The kill switch toggle: the user's own, one of their accounts', or (staff) everyone's."""

from __future__ import annotations

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_POST

from accounts.decorators import approved_required
from trading import selectors
from trading.models import BrokerAccount
from trading.services import killswitches
from trading.views.paging import int_or_none


@approved_required
@require_POST
def killswitch_toggle(request: HttpRequest) -> HttpResponse:
    """Turn a kill switch on or off: the user's own, one of their accounts', or (staff) everyone's."""
    scope = request.POST.get("scope", "user")
    engaged = request.POST.get("engaged") == "on"
    reason = (request.POST.get("reason") or "").strip()[:200]
    if scope == "account":
        account = get_object_or_404(
            BrokerAccount.objects.owned_by(request.user), pk=int_or_none(request.POST.get("account"))
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
        live = selectors.live_summary(user=request.user)
        return render(request, "trading/execution/_dashboard_live_content.html", {"live": live})
    target = request.POST.get("next") or ""
    if not url_has_allowed_host_and_scheme(
        target, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        target = reverse("position-list")
    return redirect(target)
