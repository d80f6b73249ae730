"""Contract specifications in the console: the tick arithmetic, edited by operators."""

from __future__ import annotations

from django.contrib import admin

from trading.models import ContractSpec


@admin.register(ContractSpec)
class ContractSpecAdmin(admin.ModelAdmin):
    list_display = ["root", "name", "exchange", "tick_size", "tick_value", "point_value", "months"]
    search_fields = ["root", "name"]
    readonly_fields = ["updated_at"]
