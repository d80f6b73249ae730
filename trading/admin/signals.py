"""Signals in the console: read-only, with each trader's decision; unfinished ones can be queued again."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from trading.admin.base import ReadOnlyAdmin
from trading.models import Decision, Signal
from trading.services import sweep


class DecisionInline(admin.TabularInline):
    model = Decision
    extra = 0
    can_delete = False
    show_change_link = False
    fields = ["trader", "status", "reason", "move", "quantity", "attempts", "decided_at", "finished_at"]
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(Signal)
class SignalAdmin(ReadOnlyAdmin):
    list_display = ["id", "recorder", "received_at", "summary", "status", "short_reason", "source_ip"]
    list_filter = ["status", "action"]
    list_select_related = ["recorder"]
    search_fields = ["=id", "alert_id", "ticker", "recorder__name"]
    date_hierarchy = "received_at"
    inlines = [DecisionInline]
    actions = ["queue_again"]
    fields = [
        "recorder",
        "status",
        "reason",
        "received_at",
        "source_ip",
        "content_type",
        "raw_body",
        "fields",
        "action",
        "ticker",
        "quantity",
        "price",
        "market_position",
        "position_size",
        "alert_id",
        "fire_time",
        "comment",
        "move",
        "recorder_position_before",
        "recorder_position_after",
        "attempts",
        "lease_expires_at",
        "processed_at",
    ]
    readonly_fields = fields

    @admin.display(description="signal")
    def summary(self, signal: Signal) -> str:
        parts = [
            signal.action.upper() or "?",
            str(signal.quantity.normalize()) if signal.quantity else "",
            signal.ticker,
        ]
        if signal.price:
            parts.append(f"@ {signal.price.normalize()}")
        return " ".join(part for part in parts if part)

    @admin.display(description="reason")
    def short_reason(self, signal: Signal) -> str:
        return signal.reason if len(signal.reason) <= 80 else f"{signal.reason[:77]}..."

    @admin.action(description="Queue the selected unfinished signals again")
    def queue_again(self, request: HttpRequest, queryset: QuerySet[Signal]) -> None:
        count = sweep.signals_requeue(signal_ids=list(queryset.values_list("pk", flat=True)))
        self.message_user(
            request, f"Queued {count} unfinished signal(s); finished ones are left as they are."
        )
