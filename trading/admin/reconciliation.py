"""Reconciliation runs and the actions they took, in the console: read-only."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from trading.admin.base import ReadOnlyAdmin
from trading.models import ReconcileAction, ReconcileRun


class ReconcileActionInline(admin.TabularInline):
    model = ReconcileAction
    extra = 0
    can_delete = False
    show_change_link = False
    fields = ["created_at", "kind", "account_id", "symbol", "order", "reason"]
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(ReconcileRun)
class ReconcileRunAdmin(ReadOnlyAdmin):
    list_display = ["id", "broker_account", "trigger", "status", "actions_count", "started_at", "short_error"]
    list_filter = ["status", "trigger"]
    list_select_related = ["broker_account"]
    search_fields = ["=id", "broker_account__name"]
    date_hierarchy = "started_at"
    inlines = [ReconcileActionInline]
    readonly_fields = [field.name for field in ReconcileRun._meta.fields]

    @admin.display(description="error")
    def short_error(self, run: ReconcileRun) -> str:
        return run.error if len(run.error) <= 80 else f"{run.error[:77]}..."


@admin.register(ReconcileAction)
class ReconcileActionAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "broker_account", "kind", "account_id", "symbol", "order", "short_reason"]
    list_filter = ["kind"]
    list_select_related = ["broker_account", "order"]
    search_fields = ["broker_account__name", "account_id", "symbol", "order__client_id"]
    raw_id_fields = ["run", "broker_account", "order"]
    date_hierarchy = "created_at"
    readonly_fields = [field.name for field in ReconcileAction._meta.fields]

    @admin.display(description="reason")
    def short_reason(self, action: ReconcileAction) -> str:
        return action.reason if len(action.reason) <= 100 else f"{action.reason[:97]}..."
