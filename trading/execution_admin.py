"""Operator console for execution: signals and orders are read-only logs; kill switches use the service."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from trading.models import (
    Decision,
    Fill,
    KillSwitch,
    LastPrice,
    Order,
    PaperFill,
    PaperOrder,
    PaperPosition,
    Position,
    Signal,
)
from trading.services import killswitches, orders, sweep


class ReadOnlyAdmin(admin.ModelAdmin):
    """A log: looked at, never edited by hand (the pipeline's conditional updates own these rows)."""

    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


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


@admin.register(KillSwitch)
class KillSwitchAdmin(admin.ModelAdmin):
    list_display = ["__str__", "scope", "engaged", "reason", "changed_by", "changed_at"]
    list_filter = ["scope", "engaged"]
    list_select_related = ["user", "broker_account", "changed_by"]
    raw_id_fields = ["user", "broker_account"]
    fields = ["scope", "user", "broker_account", "engaged", "reason", "changed_by", "changed_at"]
    readonly_fields = ["changed_by", "changed_at"]
    actions = ["turn_on", "turn_off"]

    def get_readonly_fields(self, request: HttpRequest, obj=None) -> list[str]:
        # What a switch stops is fixed once it exists; only on/off and the reason change.
        if obj is not None:
            return ["scope", "user", "broker_account", *self.readonly_fields]
        return self.readonly_fields

    def save_model(self, request: HttpRequest, obj: KillSwitch, form, change: bool) -> None:
        switch = killswitches.killswitch_set(
            engaged=obj.engaged,
            user=obj.user if obj.scope == KillSwitch.Scope.USER else None,
            account=obj.broker_account if obj.scope == KillSwitch.Scope.ACCOUNT else None,
            changed_by=request.user,
            reason=obj.reason,
        )
        obj.pk, obj.changed_at, obj.changed_by = switch.pk, switch.changed_at, switch.changed_by

    def _switch(self, request: HttpRequest, queryset: QuerySet[KillSwitch], engaged: bool) -> None:
        for switch in queryset.select_related("user", "broker_account"):
            killswitches.killswitch_set(
                engaged=engaged,
                user=switch.user if switch.scope == KillSwitch.Scope.USER else None,
                account=switch.broker_account if switch.scope == KillSwitch.Scope.ACCOUNT else None,
                changed_by=request.user,
                reason=switch.reason,
            )
        self.message_user(request, f"{queryset.count()} kill switch(es) turned {'on' if engaged else 'off'}.")

    @admin.action(description="Turn the selected kill switches on")
    def turn_on(self, request: HttpRequest, queryset: QuerySet[KillSwitch]) -> None:
        self._switch(request, queryset, True)

    @admin.action(description="Turn the selected kill switches off")
    def turn_off(self, request: HttpRequest, queryset: QuerySet[KillSwitch]) -> None:
        self._switch(request, queryset, False)


@admin.register(LastPrice)
class LastPriceAdmin(ReadOnlyAdmin):
    list_display = ["owner", "symbol", "price", "source", "updated_at"]
    list_select_related = ["owner"]
    search_fields = ["owner__username", "symbol"]


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
