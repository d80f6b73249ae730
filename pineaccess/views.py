"""The buyer's page: their scripts with status and expiry, and the TradingView username."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_http_methods

from pineaccess import selectors
from pineaccess.forms import TradingViewUsernameForm
from pineaccess.services.usernames import tradingview_username_change


@login_required
@require_http_methods(["GET", "POST"])
def manage(request: HttpRequest) -> HttpResponse:
    """Show the user's script access; change the TradingView username when nothing is granted."""
    user = request.user
    can_change = selectors.tradingview_username_can_change(user=user)
    form = TradingViewUsernameForm(request.POST or None)
    if request.method == "POST":
        if not can_change:
            messages.error(request, "Your TradingView username cannot change while you have script access.")
            return redirect("pineaccess:manage")
        if form.is_valid():
            try:
                check = tradingview_username_change(
                    user=user, username=form.cleaned_data["tradingview_username"], requested_by=user
                )
            except ValidationError as error:
                form.add_error("tradingview_username", error)
            else:
                if check.valid:
                    messages.success(request, f"Your TradingView username is now {check.username}.")
                else:
                    messages.warning(
                        request,
                        f"Your TradingView username is now {check.username}. TradingView could not be "
                        "reached to confirm it; it will be checked again automatically.",
                    )
                return redirect("pineaccess:manage")
    context = {
        "accesses": selectors.script_accesses_of_user(user=user),
        "can_change_username": can_change,
        "form": form,
    }
    return render(request, "pineaccess/manage.html", context, status=400 if form.errors else 200)
