"""Orders, positions and fills in the console: read-only logs; unknown orders can be looked up."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from trading.admin.base import ReadOnlyAdmin
from trading.models import Fill, Order, Position
from trading.services import orders


@admin.register(Order)
class OrderAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "created_at",
        "broker_account",
        "account_name",
        "role",
        "action",
        "quantity",
        "symbol",
        "order_type",
        "price",
        "stop_price",
        "status",
        "short_error",
    ]
    list_filter = ["status", "role", "order_type", "via_liquidation"]
    list_select_related = ["broker_account"]
    search_fields = ["=id", "client_id", "broker_order_id", "broker_account__name"]
    raw_id_fields = ["decision", "signal", "trader", "broker_account", "bracket_entry"]
    date_hierarchy = "created_at"
    actions = ["settle"]
    readonly_fields = [field.name for field in Order._meta.fields]

    @admin.display(description="error")
    def short_error(self, order: Order) -> str:
        return order.error if len(order.error) <= 80 else f"{order.error[:77]}..."

    @admin.action(description="Look up the selected unknown orders at the broker (never resends)")
    def settle(self, request: HttpRequest, queryset: QuerySet[Order]) -> None:
        settled = 0
        for order_id in queryset.filter(status=Order.Status.UNKNOWN).values_list("pk", flat=True):
            order = orders.order_settle(order_id=order_id)
            settled += order is not None and order.status != Order.Status.UNKNOWN
        self.message_user(request, f"{settled} unknown order(s) settled.", messages.INFO)


@admin.register(Position)
class PositionAdmin(ReadOnlyAdmin):
    list_display = [
        "broker_account",
        "account_name",
        "symbol",
        "quantity",
        "avg_price",
        "realized_pnl",
        "updated_at",
    ]
    list_select_related = ["broker_account"]
    search_fields = ["broker_account__name", "symbol", "account_id"]


@admin.register(Fill)
class FillAdmin(ReadOnlyAdmin):
    list_display = [
        "filled_at",
        "broker_account",
        "account_id",
        "action",
        "quantity",
        "symbol",
        "price",
        "realized_pnl",
    ]
    list_select_related = ["broker_account"]
    search_fields = ["broker_fill_id", "broker_order_id", "broker_account__name"]
    date_hierarchy = "filled_at"
