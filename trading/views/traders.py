"""Trader pages: which recorder trades on which sub-accounts, with the trader's own overrides."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db.models import Prefetch
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.views.decorators.http import require_http_methods, require_POST

from accounts.decorators import approved_required
from trading import selectors
from trading.forms import TraderForm, apply_service_errors, target_formset
from trading.models import Trader, TraderSubAccount
from trading.services import traders
from trading.views.paging import paginate


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
    return render(request, "trading/trader_list.html", {"traders": paginate(request, _traders(request.user))})


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
