"""Broker account pages: the list, add, edit, delete, and connecting Tradovate (OAuth, test, sub-accounts).

The OAuth state is a random value kept in the user's session, checked in constant time when Tradovate sends
the user back, and removed at the first callback whatever its outcome: a state works once, in the session
that started it, for OAUTH_STATE_MAX_AGE seconds.
"""

from __future__ import annotations

import hmac
import logging
import secrets
import time
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db.models import Count
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from accounts.decorators import approved_required
from trading.brokers.base import BrokerError
from trading.brokers.tradovate import authorize_url
from trading.forms import (
    BrokerAccountCreateForm,
    BrokerAccountUpdateForm,
    TradovateConnectForm,
    apply_service_errors,
)
from trading.models import BrokerAccount
from trading.services import broker_accounts
from trading.views.paging import paginate

logger = logging.getLogger(__name__)

RECENT_RECONCILE_ACTIONS = 10
OAUTH_SESSION_KEY = "tradovate_oauth"
OAUTH_STATE_MAX_AGE = 600
START_AGAIN = "Nothing was saved: start the connection again."


@approved_required
def broker_account_list(request: HttpRequest) -> HttpResponse:
    """List the user's broker accounts with their sub-accounts and status."""
    accounts = (
        BrokerAccount.objects.owned_by(request.user)
        .annotate(trader_count=Count("traders"))
        .prefetch_related("subaccounts")
        .order_by("name", "pk")
    )
    return render(request, "trading/broker_account_list.html", {"accounts": paginate(request, accounts)})


@sensitive_post_parameters("password")
@approved_required
@require_http_methods(["GET", "POST"])
def broker_account_create(request: HttpRequest) -> HttpResponse:
    """Add a paper account or a Tradovate login."""
    form = BrokerAccountCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        account = _create_account(request, form)
        if account is not None:
            messages.success(request, f"Account {account.name} added.")
            return redirect("broker-account-list")
    return render(request, "trading/broker_account_form.html", {"form": form, "account": None})


@sensitive_variables("data")
def _create_account(request: HttpRequest, form: BrokerAccountCreateForm) -> BrokerAccount | None:
    data = form.cleaned_data
    try:
        return broker_accounts.broker_account_create(
            owner=request.user,
            name=data["name"],
            kind=data["kind"],
            is_demo=data["is_demo"],
            username=data["username"],
            password=data["password"],
        )
    except ValidationError as error:
        apply_service_errors(form, error)
        return None


@sensitive_post_parameters("password")
@approved_required
@require_http_methods(["GET", "POST"])
def broker_account_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """Rename an account or change its Tradovate login."""
    account = get_object_or_404(BrokerAccount.objects.owned_by(request.user), pk=pk)
    form = BrokerAccountUpdateForm(request.POST or None, account=account)
    if request.method == "POST" and form.is_valid():
        if _update_account(form, account):
            messages.success(request, f"Account {account.name} saved.")
            return redirect("broker-account-list")
        account.refresh_from_db()
    return render(
        request,
        "trading/broker_account_form.html",
        {
            "form": form,
            "account": account,
            "subaccounts": account.subaccounts.all(),
            "reconcile_actions": account.reconcile_actions.all()[:RECENT_RECONCILE_ACTIONS],
        },
    )


@sensitive_variables("data")
def _update_account(form: BrokerAccountUpdateForm, account: BrokerAccount) -> bool:
    data = form.cleaned_data
    try:
        broker_accounts.broker_account_update(
            account=account,
            name=data["name"],
            is_demo=data.get("is_demo"),
            username=data.get("username"),
            password=data.get("password") or None,
        )
    except ValidationError as error:
        apply_service_errors(form, error)
        return False
    return True


@approved_required
@require_POST
def broker_account_delete(request: HttpRequest, pk: int) -> HttpResponse:
    """Delete a broker account with its traders."""
    account = get_object_or_404(BrokerAccount.objects.owned_by(request.user), pk=pk)
    name = account.name
    broker_accounts.broker_account_delete(account=account)
    messages.success(request, f"Account {name} deleted.")
    return redirect(reverse("broker-account-list"))


# --- connecting Tradovate -----------------------------------------------------------------------------------


def _oauth_configured() -> bool:
    return bool(settings.TRADOVATE_CLIENT_ID and settings.TRADOVATE_CLIENT_SECRET)


def _connect_page(request: HttpRequest, form: TradovateConnectForm, *, error: str = "", status: int = 200):
    return render(
        request,
        "trading/tradovate/connect.html",
        {"form": form, "error": error, "configured": _oauth_configured()},
        status=status,
    )


@approved_required
@require_http_methods(["GET", "POST"])
def tradovate_connect(request: HttpRequest) -> HttpResponse:
    """Choose the account to connect, then go to Tradovate's authorize page with a session-bound state."""
    initial = {"account": request.GET.get("account")} if request.GET.get("account", "").isdigit() else {}
    data = request.POST if request.method == "POST" else None
    form = TradovateConnectForm(data, owner=request.user, initial=initial)
    if request.method != "POST" or not form.is_valid():
        return _connect_page(request, form, status=400 if request.method == "POST" else 200)
    if not _oauth_configured():
        return _connect_page(
            request,
            form,
            error="Connecting through OAuth is not set up on this server (TRADOVATE_CLIENT_ID and "
            "TRADOVATE_CLIENT_SECRET). Ask the operator, or add the account with its username and password.",
            status=400,
        )
    state = secrets.token_urlsafe(32)
    redirect_uri = request.build_absolute_uri(reverse("tradovate-oauth-callback"))
    account = form.cleaned_data["account"]
    # One connection at a time per session: starting another replaces (and so voids) the earlier state.
    request.session[OAUTH_SESSION_KEY] = {
        "state": state,
        "account": account.pk if account is not None else None,
        "name": form.cleaned_data["name"],
        "redirect_uri": redirect_uri,
        "issued_at": time.time(),
    }
    logger.info("User %s started a Tradovate OAuth connect", request.user.pk)
    return redirect(
        authorize_url(settings.TRADOVATE_OAUTH_URL, settings.TRADOVATE_CLIENT_ID, redirect_uri, state)
    )


def _callback_problem(request: HttpRequest, pending: dict[str, Any] | None) -> str | None:
    """Why the callback cannot be trusted or used, in words; None when it can."""
    state = request.GET.get("state", "")
    if not isinstance(pending, dict) or not pending.get("state"):
        return (
            "This answer from Tradovate does not belong to a connection started in this browser session, "
            f"or it was already used. {START_AGAIN}"
        )
    if not state or not hmac.compare_digest(state.encode(), str(pending["state"]).encode()):
        return (
            "The answer from Tradovate does not match the connection you started (state check failed). "
            f"{START_AGAIN}"
        )
    if time.time() - float(pending.get("issued_at") or 0) > OAUTH_STATE_MAX_AGE:
        return (
            f"The connection took more than {OAUTH_STATE_MAX_AGE // 60} minutes to come back. {START_AGAIN}"
        )
    if request.GET.get("error"):
        words = request.GET.get("error_description") or request.GET.get("error")
        return f"Tradovate did not authorise the connection: {words}. {START_AGAIN}"
    if not request.GET.get("code"):
        return f"Tradovate sent no authorization code back. {START_AGAIN}"
    return None


@approved_required
@require_GET
def tradovate_oauth_callback(request: HttpRequest) -> HttpResponse:
    """Check the state, exchange the code (live, then demo), keep the token and list the login's accounts."""
    pending = request.session.pop(OAUTH_SESSION_KEY, None)  # single use, whatever happens next
    form = TradovateConnectForm(owner=request.user)
    problem = _callback_problem(request, pending)
    if problem:
        logger.warning("Tradovate OAuth callback refused for user %s", request.user.pk)
        return _connect_page(request, form, error=problem, status=400)
    account = None
    if pending and pending.get("account") is not None:
        account = BrokerAccount.objects.owned_by(request.user).filter(pk=pending["account"]).first()
        if account is None:
            return _connect_page(
                request, form, error=f"The account to connect no longer exists. {START_AGAIN}", status=400
            )
    try:
        account = broker_accounts.broker_account_connect_oauth(
            owner=request.user,
            code=request.GET["code"],
            redirect_uri=pending["redirect_uri"],
            account=account,
            name=pending.get("name") or "",
        )
    except ValidationError as error:
        return _connect_page(request, form, error=" ".join(error.messages) + f" {START_AGAIN}", status=400)
    except BrokerError as error:
        return _connect_page(request, form, error=error.message, status=400)
    messages.success(
        request, f"{account.name} is connected to Tradovate ({account.environment_label.lower()})."
    )
    check = broker_accounts.broker_account_check_connection(account=account)
    return render(request, "trading/tradovate/connection.html", {"account": account, "check": check})


@approved_required
@require_POST
def broker_account_test(request: HttpRequest, pk: int) -> HttpResponse:
    """Test an account's connection: the accounts of its login with their balances, and the choice of them."""
    account = get_object_or_404(BrokerAccount.objects.owned_by(request.user), pk=pk)
    check = broker_accounts.broker_account_check_connection(account=account)
    account.refresh_from_db()
    return render(
        request, "trading/tradovate/connection.html", {"account": account, "check": check}, status=200
    )


@approved_required
@require_POST
def broker_account_subaccounts(request: HttpRequest, pk: int) -> HttpResponse:
    """Trade exactly the ticked accounts of the login."""
    account = get_object_or_404(BrokerAccount.objects.owned_by(request.user), pk=pk)
    try:
        rows = broker_accounts.broker_account_choose_subaccounts(
            account=account, chosen_ids=request.POST.getlist("subaccount")
        )
    except ValidationError as error:
        messages.error(request, " ".join(error.messages))
        return redirect("broker-account-detail", pk=account.pk)
    except BrokerError as error:
        messages.error(request, f"The accounts could not be read from the broker: {error.message}")
        return redirect("broker-account-detail", pk=account.pk)
    names = ", ".join(row.name for row in rows)
    messages.success(request, f"{account.name} trades {names}. Link them to recorders on the traders page.")
    return redirect("broker-account-list")
