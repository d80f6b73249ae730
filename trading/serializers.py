"""API representations of the trading domain, named as in shared/specs/interfaces.md."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.core.exceptions import NON_FIELD_ERRORS
from django.core.exceptions import ValidationError as DjangoValidationError
from django.views.decorators.debug import sensitive_variables
from rest_framework import serializers
from rest_framework.settings import api_settings

from trading import selectors
from trading.models import (
    MAX_TP_TARGETS,
    PLAN_SETTING_FIELDS,
    RISK_SETTING_FIELDS,
    BrokerAccount,
    Decision,
    Order,
    Position,
    Recorder,
    Signal,
    Trader,
)
from trading.services import broker_accounts, contracts, prices, recorders, traders
from trading.services.recorders import RECORDER_FIELDS
from trading.services.traders import TRADER_FIELDS
from trading.services.validation import UNSET
from trading.symbols import SymbolError


def as_api_error(error: DjangoValidationError) -> serializers.ValidationError:
    """Return a service's ValidationError in DRF's shape (`non_field_errors` for the whole object)."""
    if hasattr(error, "error_dict"):
        detail = {
            (api_settings.NON_FIELD_ERRORS_KEY if field == NON_FIELD_ERRORS else field): messages
            for field, messages in error.message_dict.items()
        }
        return serializers.ValidationError(detail)
    return serializers.ValidationError({api_settings.NON_FIELD_ERRORS_KEY: error.messages})


def _number(value: Decimal) -> int | float:
    """Return a Decimal as a JSON number: 8, not "8.0000"."""
    normalized = value.normalize()
    return int(normalized) if normalized == normalized.to_integral_value() else float(normalized)


class TakeProfitTargetSerializer(serializers.Serializer):
    """`{"value": 8, "trim": 1}`: a distance in take-profit units and the contracts it closes (null: rest)."""

    value = serializers.DecimalField(max_digits=12, decimal_places=4, min_value=Decimal("0.0001"))
    trim = serializers.IntegerField(min_value=1, allow_null=True, required=False, default=None)

    def to_representation(self, instance: Any) -> dict[str, Any]:
        value = instance["value"] if isinstance(instance, dict) else instance.value
        trim = instance["trim"] if isinstance(instance, dict) else instance.trim
        return {"value": _number(Decimal(value)), "trim": trim}


class ServiceSerializerMixin:
    """Serializers whose create and update run a service, turning its ValidationError into a 400."""

    @sensitive_variables("kwargs")
    def run(self, service, **kwargs: Any):
        try:
            return service(**kwargs)
        except DjangoValidationError as error:
            raise as_api_error(error) from None


# --- broker accounts ----------------------------------------------------------------------------------------


class SubAccountSerializer(serializers.Serializer):
    id = serializers.CharField(source="broker_id", read_only=True)
    name = serializers.CharField(read_only=True)
    active = serializers.BooleanField(read_only=True)


class BrokerAccountSerializer(ServiceSerializerMixin, serializers.ModelSerializer):
    """A paper account or Tradovate login; the password is write-only and tokens never leave the server."""

    username = serializers.CharField(required=False, allow_blank=True, max_length=200)
    password = serializers.CharField(
        write_only=True, required=False, allow_blank=True, max_length=200, trim_whitespace=False
    )
    has_password = serializers.SerializerMethodField()
    connected = serializers.SerializerMethodField()
    subaccounts = SubAccountSerializer(many=True, read_only=True)

    class Meta:
        model = BrokerAccount
        fields = [
            "id",
            "name",
            "kind",
            "is_demo",
            "username",
            "password",
            "has_password",
            "connected",
            "status",
            "status_reason",
            "status_message",
            "subaccounts",
            "subaccounts_synced_at",
            "created_at",
        ]
        read_only_fields = [
            "status",
            "status_reason",
            "status_message",
            "subaccounts_synced_at",
            "created_at",
        ]
        # Uniqueness is the service's to judge: it knows the owner.
        validators = []

    def get_has_password(self, account: BrokerAccount) -> bool:
        return bool(account.password)

    def get_connected(self, account: BrokerAccount) -> bool:
        """Whether a token from Tradovate is stored (always true for a paper account)."""
        return account.is_paper or bool(account.access_token or account.oauth_token)

    def validate_kind(self, kind: str) -> str:
        if self.instance is not None and kind != self.instance.kind:
            raise serializers.ValidationError(
                "The broker of an account cannot change: add a new account instead."
            )
        return kind

    @sensitive_variables("validated_data")
    def create(self, validated_data: dict[str, Any]) -> BrokerAccount:
        return self.run(
            broker_accounts.broker_account_create, owner=self.context["request"].user, **validated_data
        )

    @sensitive_variables("validated_data")
    def update(self, instance: BrokerAccount, validated_data: dict[str, Any]) -> BrokerAccount:
        validated_data.pop("kind", None)
        return self.run(
            broker_accounts.broker_account_update,
            account=instance,
            name=validated_data.get("name"),
            is_demo=validated_data.get("is_demo"),
            username=validated_data.get("username"),
            password=validated_data.get("password") or None,
        )


# --- recorders ----------------------------------------------------------------------------------------------


NUMBER_FIELDS = {"sl_amount", "avg_down_point", "max_daily_loss"}


class RecorderSerializer(ServiceSerializerMixin, serializers.ModelSerializer):
    """Every setting of a recorder; the webhook URL and token are shown to the owner only."""

    owner = serializers.CharField(source="owner.get_username", read_only=True)
    is_owner = serializers.SerializerMethodField()
    tp_targets = TakeProfitTargetSerializer(many=True, required=False, source="targets")
    webhook_url = serializers.SerializerMethodField()
    webhook_token = serializers.SerializerMethodField()

    class Meta:
        model = Recorder
        fields = [
            "id",
            "owner",
            "is_owner",
            *RECORDER_FIELDS[:3],
            "tp_targets",
            *RECORDER_FIELDS[3:],
            "webhook_url",
            "webhook_token",
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["created_at", "updated_at"]
        extra_kwargs = {name: {"coerce_to_string": False} for name in NUMBER_FIELDS}
        validators = []

    def validate_tp_targets(self, items: list[dict]) -> list[dict]:
        if len(items) > MAX_TP_TARGETS:
            raise serializers.ValidationError(f"At most {MAX_TP_TARGETS} take-profit targets.")
        return items

    def _is_owner(self, recorder: Recorder) -> bool:
        request = self.context.get("request")
        return request is not None and recorder.owner_id == request.user.pk

    def get_is_owner(self, recorder: Recorder) -> bool:
        return self._is_owner(recorder)

    def get_webhook_url(self, recorder: Recorder) -> str | None:
        if not self._is_owner(recorder):
            return None
        return self.context["request"].build_absolute_uri(selectors.webhook_path(recorder.webhook_token))

    def get_webhook_token(self, recorder: Recorder) -> str | None:
        return recorder.webhook_token if self._is_owner(recorder) else None

    def to_representation(self, instance: Recorder) -> dict[str, Any]:
        data = super().to_representation(instance)
        if not data["is_owner"]:
            # Not null: absent, so nobody mistakes another user's recorder for one without a webhook.
            data.pop("webhook_url")
            data.pop("webhook_token")
        return data

    def create(self, validated_data: dict[str, Any]) -> Recorder:
        targets = validated_data.pop("targets", [])
        return self.run(
            recorders.recorder_create,
            owner=self.context["request"].user,
            tp_targets=targets,
            **validated_data,
        )

    def update(self, instance: Recorder, validated_data: dict[str, Any]) -> Recorder:
        targets = validated_data.pop("targets", None)
        return self.run(recorders.recorder_update, recorder=instance, tp_targets=targets, **validated_data)


# --- traders ------------------------------------------------------------------------------------------------


class TraderSubAccountSerializer(serializers.Serializer):
    """`{"id": "<broker's account id>", "name": "...", "multiplier": 1}`."""

    id = serializers.CharField(max_length=64)
    name = serializers.CharField(read_only=True)
    multiplier = serializers.IntegerField(min_value=1, max_value=1000, default=1)

    def to_representation(self, link: Any) -> dict[str, Any]:
        return {"id": link.subaccount.broker_id, "name": link.subaccount.name, "multiplier": link.multiplier}


class OwnedRecorderField(serializers.PrimaryKeyRelatedField):
    def get_queryset(self):
        return Recorder.objects.visible_to(self.context["request"].user)


class OwnedAccountField(serializers.PrimaryKeyRelatedField):
    def get_queryset(self):
        return BrokerAccount.objects.owned_by(self.context["request"].user)


class TraderSerializer(ServiceSerializerMixin, serializers.ModelSerializer):
    """A recorder on sub-accounts of a broker account; each risk field optionally overrides the recorder's."""

    recorder = OwnedRecorderField()
    account = OwnedAccountField()
    subaccounts = TraderSubAccountSerializer(many=True, required=False, source="subaccount_links")
    tp_targets = TakeProfitTargetSerializer(many=True, required=False, allow_null=True, source="targets")

    class Meta:
        model = Trader
        fields = [
            "id",
            "recorder",
            "account",
            "subaccounts",
            "enabled",
            *RISK_SETTING_FIELDS,
            *PLAN_SETTING_FIELDS[:1],
            "tp_targets",
            *PLAN_SETTING_FIELDS[1:],
            "created_at",
            "updated_at",
        ]
        read_only_fields = ["created_at", "updated_at"]
        extra_kwargs = {name: {"coerce_to_string": False} for name in NUMBER_FIELDS}
        validators = []

    def get_fields(self) -> dict[str, serializers.Field]:
        fields = super().get_fields()
        for name in ("tp_units", "sl_units", "sl_type", "avg_down_units", "direction_filter", "timezone"):
            fields[name].allow_null = True
        return fields

    def to_representation(self, trader: Trader) -> dict[str, Any]:
        data = super().to_representation(trader)
        for name in ("tp_units", "sl_units", "sl_type", "avg_down_units", "direction_filter", "timezone"):
            data[name] = data[name] or None
        if not trader.tp_targets_overridden:
            data["tp_targets"] = None
        return data

    def validate_tp_targets(self, items: list[dict] | None) -> list[dict] | None:
        if items is not None and len(items) > MAX_TP_TARGETS:
            raise serializers.ValidationError(f"At most {MAX_TP_TARGETS} take-profit targets.")
        return items

    @staticmethod
    def _service_kwargs(validated_data: dict[str, Any]) -> dict[str, Any]:
        kwargs = {name: validated_data[name] for name in TRADER_FIELDS if name in validated_data}
        for name, value in kwargs.items():
            if (
                value is None
                and name
                in (
                    "tp_units",
                    "sl_units",
                    "sl_type",
                    "avg_down_units",
                    "direction_filter",
                )
            ) or (value is None and name == "timezone"):
                kwargs[name] = ""
        return kwargs

    @staticmethod
    def _links(validated_data: dict[str, Any]) -> Any:
        if "subaccount_links" not in validated_data:
            return UNSET
        return [(item["id"], item["multiplier"]) for item in validated_data["subaccount_links"]]

    def create(self, validated_data: dict[str, Any]) -> Trader:
        links = self._links(validated_data)
        return self.run(
            traders.trader_create,
            owner=self.context["request"].user,
            recorder=validated_data["recorder"],
            account=validated_data["account"],
            subaccounts=None if links is UNSET else links,
            tp_targets=validated_data.get("targets"),
            **self._service_kwargs(validated_data),
        )

    def update(self, instance: Trader, validated_data: dict[str, Any]) -> Trader:
        return self.run(
            traders.trader_update,
            trader=instance,
            recorder=validated_data.get("recorder"),
            account=validated_data.get("account"),
            subaccounts=self._links(validated_data),
            tp_targets=validated_data.get("targets", UNSET),
            **self._service_kwargs(validated_data),
        )


# --- signals, decisions, orders and positions (read only) ---------------------------------------------------


class OrderSerializer(serializers.ModelSerializer):
    """An order as sent to the broker, with its status and the broker's words when it refused."""

    signal = serializers.PrimaryKeyRelatedField(read_only=True)
    trader = serializers.PrimaryKeyRelatedField(read_only=True)
    account = serializers.PrimaryKeyRelatedField(source="broker_account", read_only=True)

    class Meta:
        model = Order
        fields = [
            "id",
            "signal",
            "trader",
            "account",
            "account_id",
            "account_name",
            "symbol",
            "client_id",
            "broker_order_id",
            "role",
            "action",
            "order_type",
            "quantity",
            "price",
            "stop_price",
            "trail_distance",
            "status",
            "error",
            "filled_quantity",
            "avg_fill_price",
            "created_at",
            "submitted_at",
            "updated_at",
        ]
        read_only_fields = fields


class DecisionSerializer(serializers.ModelSerializer):
    """One trader's decision on a signal, with its orders."""

    trader = serializers.PrimaryKeyRelatedField(read_only=True)
    account = serializers.PrimaryKeyRelatedField(source="trader.account", read_only=True)
    orders = OrderSerializer(many=True, read_only=True)

    class Meta:
        model = Decision
        fields = ["id", "trader", "account", "status", "reason", "move", "quantity", "details", "orders"]
        read_only_fields = fields


class SignalSerializer(serializers.ModelSerializer):
    """A stored alert, what was read from it, and the decision and orders of each of the user's traders."""

    recorder = serializers.PrimaryKeyRelatedField(read_only=True)
    decisions = DecisionSerializer(many=True, read_only=True, source="visible_decisions")

    class Meta:
        model = Signal
        fields = [
            "id",
            "recorder",
            "status",
            "reason",
            "action",
            "symbol",
            "quantity",
            "price",
            "market_position",
            "position_size",
            "alert_id",
            "fire_time",
            "comment",
            "received_at",
            "source_ip",
            "raw_body",
            "move",
            "processed_at",
            "decisions",
        ]
        read_only_fields = fields

    symbol = serializers.CharField(source="ticker", read_only=True)


class PositionSerializer(serializers.ModelSerializer):
    """A position per account and contract: signed quantity, average price and realized P&L."""

    account = serializers.PrimaryKeyRelatedField(source="broker_account", read_only=True)

    class Meta:
        model = Position
        fields = [
            "id",
            "account",
            "account_id",
            "account_name",
            "symbol",
            "quantity",
            "avg_price",
            "realized_pnl",
            "updated_at",
        ]
        read_only_fields = fields


# --- prices -------------------------------------------------------------------------------------------------


class PriceSerializer(serializers.Serializer):
    """A price for a contract: `ES`, `ESZ6`, `ES1!` or `CME_MINI:ES1!` all mean ES."""

    symbol = serializers.CharField(max_length=64)
    price = serializers.DecimalField(
        max_digits=18, decimal_places=8, min_value=Decimal("0.00000001"), max_value=prices.MAX_PRICE - 1
    )

    def validate_symbol(self, value: str) -> str:
        try:
            return contracts.contract_root(value)
        except SymbolError as error:
            raise serializers.ValidationError(str(error)) from None
