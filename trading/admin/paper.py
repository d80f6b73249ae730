"""The paper broker's book in the console: read-only."""

from __future__ import annotations

from django.contrib import admin

from trading.admin.base import ReadOnlyAdmin
from trading.models import PaperFill, PaperOrder, PaperPosition


@admin.register(PaperOrder)
class PaperOrderAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "broker_account",
        "account_id",
        "action",
        "quantity",
        "root",
        "order_type",
        "price",
        "stop_price",
        "status",
        "fill_price",
    ]
    list_filter = ["status", "order_type"]
    list_select_related = ["broker_account"]
    search_fields = ["=id", "client_id", "broker_account__name"]


@admin.register(PaperPosition)
class PaperPositionAdmin(ReadOnlyAdmin):
    list_display = [
        "broker_account",
        "account_id",
        "root",
        "quantity",
        "avg_price",
        "realized_pnl",
        "updated_at",
    ]
    list_select_related = ["broker_account"]


@admin.register(PaperFill)
class PaperFillAdmin(ReadOnlyAdmin):
    list_display = [
        "filled_at",
        "broker_account",
        "account_id",
        "action",
        "quantity",
        "root",
        "price",
        "realized_pnl",
        "session",
    ]
    list_select_related = ["broker_account"]
