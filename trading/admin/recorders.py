"""Recorders in the console (switch off, hide, new token, reset) and their virtual book."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from trading.admin.base import ReadOnlyInline
from trading.models import Recorder, RecorderPosition, RecorderTarget, RecorderTrade
from trading.services import recorders


class RecorderTargetInline(ReadOnlyInline):
    model = RecorderTarget
    fields = ["number", "value", "trim"]
    readonly_fields = fields


@admin.register(Recorder)
class RecorderAdmin(admin.ModelAdmin):
    list_display = ["name", "owner", "symbol", "enabled", "is_private", "recording_enabled", "created_at"]
    list_filter = ["enabled", "is_private", "recording_enabled", "strategy_type"]
    list_select_related = ["owner"]
    search_fields = ["name", "symbol", "owner__username"]
    raw_id_fields = ["owner"]
    # The webhook token and its digest are never shown; "Regenerate webhook token" replaces them.
    # Operators may switch a recorder off or hide it; its trading settings belong to its owner.
    exclude = ["webhook_token", "webhook_token_hash"]
    editable_fields = ["name", "enabled", "recording_enabled", "is_private"]
    inlines = [RecorderTargetInline]
    actions = ["regenerate_webhook_token", "reset_performance"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Recorders are created by their owners (page or API), which gives them a webhook token.
        return False

    def get_readonly_fields(self, request: HttpRequest, obj=None) -> list[str]:
        names = [field.name for field in Recorder._meta.concrete_fields]
        return [name for name in names if name not in (*self.editable_fields, *self.exclude, "id")]

    @admin.action(description="Regenerate the webhook token (the old URL stops working)")
    def regenerate_webhook_token(self, request: HttpRequest, queryset: QuerySet[Recorder]) -> None:
        for recorder in queryset:
            recorders.recorder_regenerate_webhook_token(recorder=recorder)
        self.message_user(
            request, f"{queryset.count()} recorder(s) have a new webhook URL.", messages.WARNING
        )

    @admin.action(description="Reset the virtual performance record")
    def reset_performance(self, request: HttpRequest, queryset: QuerySet[Recorder]) -> None:
        for recorder in queryset:
            recorders.recorder_reset_performance(recorder=recorder)
        self.message_user(request, f"{queryset.count()} recorder(s) reset.", messages.SUCCESS)


@admin.register(RecorderPosition)
class RecorderPositionAdmin(admin.ModelAdmin):
    list_display = [
        "recorder",
        "quantity",
        "avg_price",
        "realized_pnl",
        "signal_position",
        "session",
        "updated_at",
    ]
    list_select_related = ["recorder"]
    search_fields = ["recorder__name"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(RecorderTrade)
class RecorderTradeAdmin(admin.ModelAdmin):
    list_display = [
        "executed_at",
        "recorder",
        "action",
        "quantity",
        "price",
        "position_after",
        "realized_pnl",
    ]
    list_filter = ["action", "session"]
    list_select_related = ["recorder"]
    search_fields = ["recorder__name", "source_key"]
    date_hierarchy = "executed_at"
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False
