"""Recorder pages: the list, create, edit or view, the webhook token, the performance reset, delete."""

from __future__ import annotations

from django.contrib import messages
from django.core.exceptions import ValidationError
from django.db.models import Count
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_POST

from accounts.decorators import approved_required
from trading import selectors
from trading.forms import RecorderForm, apply_service_errors, target_formset
from trading.models import Recorder
from trading.services import recorders
from trading.views.paging import PAGE_SIZE, paginate


def _owned_recorder(request: HttpRequest, pk: int) -> Recorder:
    return get_object_or_404(Recorder.objects.owned_by(request.user), pk=pk)


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
        {"recorders": paginate(request, own), "public_recorders": public[:PAGE_SIZE]},
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
