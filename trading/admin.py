"""Operator console for the trading domain; secrets are never shown, only whether they are set."""

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from trading.models import (
    BrokerAccount,
    BrokerSubAccount,
    ContractSpec,
    Recorder,
    RecorderPosition,
    RecorderTarget,
    RecorderTrade,
    Trader,
    TraderSubAccount,
    TraderTarget,
)


def _set(value: str) -> str:
    return "set" if value else "not set"


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False
    show_change_link = False

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


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


@admin.register(ContractSpec)
class ContractSpecAdmin(admin.ModelAdmin):
    list_display = ["root", "name", "exchange", "tick_size", "tick_value", "point_value", "months"]
    search_fields = ["root", "name"]
    readonly_fields = ["updated_at"]


from trading import execution_admin  # noqa: E402, F401  (registers the execution admin)
from trading.execution_admin import ReadOnlyAdmin  # noqa: E402
from trading.models import ReconcileAction, ReconcileRun  # noqa: E402
from trading.services import broker_accounts, recorders


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
