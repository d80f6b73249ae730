"""JSON API of the execution side: signals, orders, positions (read) and prices (write); owner-scoped."""

from __future__ import annotations

from decimal import Decimal

from django.db.models import Prefetch, QuerySet
from rest_framework import mixins, permissions, serializers, status, viewsets
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.permissions import IsApprovedUser
from trading import execution_selectors
from trading.models import Decision, Order, Position, Signal
from trading.services import contracts, prices
from trading.symbols import SymbolError

PERMISSIONS = [permissions.IsAuthenticated, IsApprovedUser]


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


class SignalViewSet(viewsets.ReadOnlyModelViewSet):
    """The user's signal log (`?recorder=`, `?status=`), each with the user's decisions and orders."""

    serializer_class = SignalSerializer
    permission_classes = PERMISSIONS

    def get_queryset(self) -> QuerySet[Signal]:
        if getattr(self, "swagger_fake_view", False):  # the OpenAPI schema is built without a user
            return Signal.objects.none()
        params = self.request.query_params
        recorder = params.get("recorder")
        status_filter = params.get("status")
        signals = execution_selectors.signal_list(
            user=self.request.user,
            recorder_id=int(recorder) if recorder and recorder.isdigit() else None,
            status=status_filter if status_filter in execution_selectors.SIGNAL_STATUSES else None,
        )
        if recorder and not recorder.isdigit():
            signals = signals.none()
        if status_filter and status_filter not in execution_selectors.SIGNAL_STATUSES:
            signals = signals.none()
        decisions = execution_selectors.decisions_for(self.request.user).prefetch_related(
            Prefetch("orders", queryset=Order.objects.order_by("account_id", "sequence", "pk"))
        )
        return signals.prefetch_related(
            Prefetch("decisions", queryset=decisions, to_attr="visible_decisions")
        )


class OrderViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """Orders on the user's broker accounts (`?account=`, `?status=`, `?signal=`)."""

    serializer_class = OrderSerializer
    permission_classes = PERMISSIONS

    def get_queryset(self) -> QuerySet[Order]:
        if getattr(self, "swagger_fake_view", False):
            return Order.objects.none()
        params = self.request.query_params
        account = params.get("account")
        status_filter = params.get("status")
        orders = execution_selectors.order_list(
            user=self.request.user,
            account_id=int(account) if account and account.isdigit() else None,
            status=status_filter if status_filter in execution_selectors.ORDER_STATUSES else None,
        )
        signal = params.get("signal")
        if signal:
            orders = orders.filter(signal_id=int(signal)) if signal.isdigit() else orders.none()
        return orders


class PositionViewSet(mixins.ListModelMixin, viewsets.GenericViewSet):
    """Positions of the user's broker accounts per sub-account and contract (`?open=true` for non-flat)."""

    serializer_class = PositionSerializer
    permission_classes = PERMISSIONS

    def get_queryset(self) -> QuerySet[Position]:
        if getattr(self, "swagger_fake_view", False):
            return Position.objects.none()
        open_only = self.request.query_params.get("open", "").lower() in ("1", "true", "yes")
        return execution_selectors.position_list(user=self.request.user, open_only=open_only)


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


class PriceView(APIView):
    """POST a price: your last known price of the contract; it fills your resting paper orders it crosses."""

    permission_classes = PERMISSIONS
    serializer_class = PriceSerializer

    def post(self, request: Request) -> Response:
        serializer = PriceSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        update = prices.price_record(
            owner=request.user,
            symbol=serializer.validated_data["symbol"],
            price=serializer.validated_data["price"],
        )
        return Response(
            {
                "symbol": update.symbol,
                "price": format(update.price.normalize(), "f"),
                "filled_accounts": update.filled_accounts,
            },
            status=status.HTTP_201_CREATED,
        )
