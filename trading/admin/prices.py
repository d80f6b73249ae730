"""Last known prices in the console: a read-only log."""

from __future__ import annotations

from django.contrib import admin

from trading.admin.base import ReadOnlyAdmin
from trading.models import LastPrice


@admin.register(LastPrice)
class LastPriceAdmin(ReadOnlyAdmin):
    list_display = ["owner", "symbol", "price", "source", "updated_at"]
    list_select_related = ["owner"]
    search_fields = ["owner__username", "symbol"]
