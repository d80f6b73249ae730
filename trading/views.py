"""Pages of the trading domain: dashboard, recorders, traders, broker accounts. Thin: parse, call, render."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.core.paginator import Paginator
from django.db.models import Count, Prefetch
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.debug import sensitive_post_parameters, sensitive_variables
from django.views.decorators.http import require_http_methods, require_POST

from accounts.decorators import approved_required
from trading import selectors
from trading.forms import (
    BrokerAccountCreateForm,
    BrokerAccountUpdateForm,
    RecorderForm,
    TraderForm,
    apply_service_errors,
    target_formset,
)
from trading.models import BrokerAccount, Recorder, Trader, TraderSubAccount
from trading.services import broker_accounts, recorders, traders

PAGE_SIZE = 50
RECENT_RECONCILE_ACTIONS = 10


def _page(request: HttpRequest, items) -> object:
    return Paginator(items, PAGE_SIZE).get_page(request.GET.get("page"))


def _owned_recorder(request: HttpRequest, pk: int) -> Recorder:
    return get_object_or_404(Recorder.objects.owned_by(request.user), pk=pk)


# --- dashboard ----------------------------------------------------------------------------------------------


@approved_required
def dashboard(request: HttpRequest) -> HttpResponse:
    """Show today's P&L, open virtual positions and accounts that need attention."""
    summary = selectors.dashboard_summary(request.user)
    chart = {
        "labels": [result.session.isoformat() for result in summary.daily_pnl],
        "values": [float(result.realized_pnl) for result in summary.daily_pnl],
    }
    return render(request, "trading/dashboard.html", {"summary": summary, "daily_chart": chart})


# --- recorders ----------------------------------------------------------------------------------------------


@approved_required
def recorder_list(request: HttpRequest) -> HttpResponse:
    """List the user's recorders with today's performance, and the public recorders of others."""
    own = selectors.with_performance(
        Recorder.objects.owned_by(request.user)
        .annotate(trader_count=Count("traders", distinct=True))
        .order_by("name", "pk")
    )
    public = (
        Recorder.objects.filter(is_private=False)
        .exclude(owner=request.user)
        .select_related("owner")
        .order_by("name", "pk")
    )
    return render(
        request,
        "trading/recorder_list.html",
        {"recorders": _page(request, own), "public_recorders": public[:PAGE_SIZE]},
    )


@approved_required
@require_http_methods(["GET", "POST"])
def recorder_create(request: HttpRequest) -> HttpResponse:
    """Create a recorder; the webhook URL is shown on the page it leads to."""
    form = RecorderForm(
        request.POST or None, initial={"timezone": Recorder._meta.get_field("timezone").default}
    )
    targets = target_formset(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid() and targets.is_valid():
        try:
            recorder = recorders.recorder_create(
                owner=request.user, tp_targets=targets.targets(), **form.service_fields()
            )
        except ValidationError as error:
            apply_service_errors(form, error, extra=targets)
        else:
            messages.success(
                request, f"Recorder {recorder.name} created. Paste its webhook URL into TradingView."
            )
            return redirect("recorder-detail", pk=recorder.pk)
    return render(request, "trading/recorder_form.html", {"form": form, "targets": targets, "recorder": None})


@approved_required
@require_http_methods(["GET", "POST"])
def recorder_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """Edit an own recorder (with its webhook and performance), or view a public recorder of another user."""
    recorder = get_object_or_404(
        Recorder.objects.visible_to(request.user).select_related("owner").prefetch_related("targets"), pk=pk
    )
    is_owner = recorder.owner_id == request.user.pk
    if request.method == "POST" and not is_owner:
        raise Http404("No recorder matches the given query.")
    context = {
        "recorder": recorder,
        "is_owner": is_owner,
        "book": selectors.recorder_book(recorder),
        "session_pnl": selectors.recorder_session_pnl(recorder),
        "recent_trades": selectors.recorder_recent_trades(recorder),
        "equity_chart": _equity_chart(recorder),
        "contract": selectors.contract_or_none(recorder.symbol),
    }
    if not is_owner:
        return render(request, "trading/recorder_public.html", context)
    if request.method == "POST":
        form = RecorderForm(request.POST, instance=recorder)
        targets = target_formset(request.POST)
        if form.is_valid() and targets.is_valid():
            try:
                recorders.recorder_update(
                    recorder=recorder, tp_targets=targets.targets(), **form.service_fields()
                )
            except ValidationError as error:
                apply_service_errors(form, error, extra=targets)
            else:
                messages.success(request, "Recorder saved.")
                return redirect("recorder-detail", pk=recorder.pk)
        recorder.refresh_from_db()
    else:
        form = RecorderForm(instance=recorder)
        targets = target_formset(targets=recorder.targets.all())
    context.update(
        form=form,
        targets=targets,
        webhook_url=request.build_absolute_uri(selectors.webhook_path(recorder.webhook_token)),
        alert_messages=selectors.alert_messages(recorder),
    )
    return render(request, "trading/recorder_form.html", context)


def _equity_chart(recorder: Recorder) -> dict:
    points = selectors.recorder_equity_curve(recorder)
    return {
        "labels": [timezone.localtime(point.at).strftime("%Y-%m-%d %H:%M") for point in points],
        "values": [float(point.cumulative_pnl) for point in points],
    }


@approved_required
@require_POST
def recorder_regenerate_token(request: HttpRequest, pk: int) -> HttpResponse:
    """Replace the recorder's webhook token; the old URL stops working."""
    recorder = _owned_recorder(request, pk)
    recorders.recorder_regenerate_webhook_token(recorder=recorder)
    messages.warning(
        request,
        "A new webhook URL was created and the old one no longer works. Update your TradingView alerts.",
    )
    return redirect("recorder-detail", pk=recorder.pk)


@approved_required
@require_POST
def recorder_reset_performance(request: HttpRequest, pk: int) -> HttpResponse:
    """Forget the recorder's virtual trades and start its record again."""
    recorder = _owned_recorder(request, pk)
    recorders.recorder_reset_performance(recorder=recorder)
    messages.success(request, f"The performance record of {recorder.name} starts again from now.")
    return redirect("recorder-detail", pk=recorder.pk)


@approved_required
@require_POST
def recorder_delete(request: HttpRequest, pk: int) -> HttpResponse:
    """Delete a recorder with its traders."""
    recorder = _owned_recorder(request, pk)
    name = recorder.name
    recorders.recorder_delete(recorder=recorder)
    messages.success(request, f"Recorder {name} deleted.")
    return redirect("recorder-list")


# --- traders ------------------------------------------------------------------------------------------------


def _traders(user):
    return (
        Trader.objects.owned_by(user)
        .select_related("recorder", "recorder__owner", "account")
        .prefetch_related(
            Prefetch("subaccount_links", queryset=TraderSubAccount.objects.select_related("subaccount"))
        )
        .order_by("recorder__name", "account__name", "pk")
    )


@approved_required
def trader_list(request: HttpRequest) -> HttpResponse:
    """List the user's traders: which recorder trades on which sub-accounts."""
    return render(request, "trading/trader_list.html", {"traders": _page(request, _traders(request.user))})


def _trader_form_context(form: TraderForm, targets, trader: Trader | None) -> dict:
    recorders = list(form.fields["recorder"].queryset)
    return {
        "form": form,
        "targets": targets,
        "trader": trader,
        "recorder_settings": selectors.recorder_source_settings(recorders),
    }


def _save_trader(request: HttpRequest, form: TraderForm, targets, trader: Trader | None) -> Trader | None:
    """Call the create or update service with what the form parsed; None when the service refused."""
    target_items = targets.targets() if form.cleaned_data.get("tp_targets_overridden") else None
    try:
        if trader is None:
            return traders.trader_create(
                owner=request.user,
                recorder=form.cleaned_data["recorder"],
                account=form.cleaned_data["account"],
                subaccounts=form.subaccount_choices(),
                tp_targets=target_items,
                **form.service_fields(),
            )
        return traders.trader_update(
            trader=trader,
            recorder=form.cleaned_data["recorder"],
            account=form.cleaned_data["account"],
            subaccounts=form.subaccount_choices(),
            tp_targets=target_items,
            **form.service_fields(),
        )
    except ValidationError as error:
        apply_service_errors(form, error, extra=targets)
        return None


@approved_required
@require_http_methods(["GET", "POST"])
def trader_create(request: HttpRequest) -> HttpResponse:
    """Link a recorder to sub-accounts of one of the user's broker accounts."""
    initial = {}
    if recorder_id := request.GET.get("recorder"):
        initial["recorder"] = recorder_id
    form = TraderForm(request.POST or None, owner=request.user, initial=initial)
    targets = target_formset(request.POST if request.method == "POST" else None)
    if request.method == "POST" and form.is_valid() and targets.is_valid():
        trader = _save_trader(request, form, targets, None)
        if trader is not None:
            messages.success(request, f"{trader.recorder.name} now trades on {trader.account.name}.")
            return redirect("trader-list")
    return render(request, "trading/trader_form.html", _trader_form_context(form, targets, None))


@approved_required
@require_http_methods(["GET", "POST"])
def trader_detail(request: HttpRequest, pk: int) -> HttpResponse:
    """Edit a trader."""
    trader = get_object_or_404(_traders(request.user).prefetch_related("targets"), pk=pk)
    if request.method == "POST":
        form = TraderForm(request.POST, owner=request.user, instance=trader)
        targets = target_formset(request.POST)
        if (
            form.is_valid()
            and targets.is_valid()
            and _save_trader(request, form, targets, trader) is not None
        ):
            messages.success(request, "Trader saved.")
            return redirect("trader-list")
    else:
        form = TraderForm(owner=request.user, instance=trader)
        targets = target_formset(targets=trader.targets.all())
    context = _trader_form_context(form, targets, trader)
    context["recorder_unavailable"] = not selectors.trader_can_follow(trader)
    return render(request, "trading/trader_form.html", context)


@approved_required
@require_POST
def trader_delete(request: HttpRequest, pk: int) -> HttpResponse:
    """Delete a trader."""
    trader = get_object_or_404(Trader.objects.owned_by(request.user), pk=pk)
    traders.trader_delete(trader=trader)
    messages.success(request, "Trader deleted.")
    return redirect("trader-list")


# --- broker accounts ----------------------------------------------------------------------------------------


@approved_required
def broker_account_list(request: HttpRequest) -> HttpResponse:
    """List the user's broker accounts with their sub-accounts and status."""
    accounts = (
        BrokerAccount.objects.owned_by(request.user)
        .annotate(trader_count=Count("traders"))
        .prefetch_related("subaccounts")
        .order_by("name", "pk")
    )
    return render(request, "trading/broker_account_list.html", {"accounts": _page(request, accounts)})


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
