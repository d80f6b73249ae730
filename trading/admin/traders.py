"""Traders in the console: operators may switch one off; the rest is its owner's."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from trading.admin.base import ReadOnlyInline
from trading.models import Trader, TraderSubAccount, TraderTarget


class TraderTargetInline(ReadOnlyInline):
    model = TraderTarget
    fields = ["number", "value", "trim"]
    readonly_fields = fields


class TraderSubAccountInline(ReadOnlyInline):
    model = TraderSubAccount
    fields = ["subaccount", "multiplier"]
    readonly_fields = fields


@admin.register(Trader)
class TraderAdmin(admin.ModelAdmin):
    list_display = ["__str__", "owner", "enabled", "created_at"]
    list_filter = ["enabled"]
    list_select_related = ["recorder", "account", "account__owner"]
    search_fields = ["recorder__name", "account__name", "account__owner__username"]
    inlines = [TraderSubAccountInline, TraderTargetInline]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def get_readonly_fields(self, request: HttpRequest, obj=None) -> list[str]:
        # Operators may switch a trader off; the rest is its owner's, validated by the trader service.
        return [field.name for field in Trader._meta.concrete_fields if field.name not in ("id", "enabled")]

    @admin.display(description="owner", ordering="account__owner__username")
    def owner(self, trader: Trader) -> str:
        return trader.account.owner.get_username()
