"""Kill switches in the console: every change goes through the kill switch service."""

from __future__ import annotations

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from trading.models import KillSwitch
from trading.services import killswitches


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
