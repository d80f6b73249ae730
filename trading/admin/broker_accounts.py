"""Broker accounts in the console: secrets are never shown, only whether they are set."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from trading.admin.base import ReadOnlyInline
from trading.models import BrokerAccount, BrokerSubAccount
from trading.services import broker_accounts


def _set(value: str) -> str:
    return "set" if value else "not set"


class SubAccountInline(ReadOnlyInline):
    model = BrokerSubAccount
    fields = ["broker_id", "name", "active", "synced_at"]
    readonly_fields = fields


@admin.register(BrokerAccount)
class BrokerAccountAdmin(admin.ModelAdmin):
    list_display = ["name", "owner", "kind", "environment", "status", "created_at"]
    list_filter = ["kind", "is_demo", "status"]
    list_select_related = ["owner"]
    search_fields = ["name", "owner__username", "owner__email"]
    raw_id_fields = ["owner"]
    # The encrypted columns are left out entirely; the read-only fields below only say whether they are set.
    fields = [
        "owner",
        "name",
        "kind",
        "is_demo",
        "login",
        "password_state",
        "access_token_state",
        "access_token_expires_at",
        "oauth_token_state",
        "broker_user_id",
        "status",
        "status_reason",
        "status_message",
        "status_changed_at",
        "retry_not_before",
        "subaccounts_synced_at",
        "created_at",
    ]
    readonly_fields = [
        "owner",
        "kind",
        "is_demo",
        "login",
        "password_state",
        "access_token_state",
        "access_token_expires_at",
        "oauth_token_state",
        "broker_user_id",
        "status_changed_at",
        "subaccounts_synced_at",
        "created_at",
    ]
    inlines = [SubAccountInline]
    actions = ["mark_active"]

    @admin.display(description="environment")
    def environment(self, account: BrokerAccount) -> str:
        return account.environment_label

    @admin.display(description="username")
    def login(self, account: BrokerAccount) -> str:
        return _set(account.username)

    @admin.display(description="password")
    def password_state(self, account: BrokerAccount) -> str:
        return _set(account.password)

    @admin.display(description="access token")
    def access_token_state(self, account: BrokerAccount) -> str:
        return _set(account.access_token)

    @admin.display(description="OAuth token")
    def oauth_token_state(self, account: BrokerAccount) -> str:
        return _set(account.oauth_token)

    @admin.action(description="Clear 'needs attention' on the selected accounts")
    def mark_active(self, request: HttpRequest, queryset: QuerySet[BrokerAccount]) -> None:
        for account in queryset:
            broker_accounts.broker_account_mark_active(account=account)
        self.message_user(request, f"{queryset.count()} account(s) marked active.", messages.SUCCESS)

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Accounts are added by their owners, whose credentials never pass through the console.
        return False
