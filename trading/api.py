"""JSON API of the trading domain: owner-scoped, token or session, paginated.

Broker accounts, recorders and traders are read and written; signals, orders and positions are read only;
prices are written.
"""

from __future__ import annotations

from django.db.models import Prefetch, QuerySet
from django.utils.decorators import method_decorator
from django.views.decorators.debug import sensitive_post_parameters
from rest_framework import mixins, permissions, status, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts.permissions import IsApprovedUser
from trading import selectors
from trading.models import BrokerAccount, Order, Position, Recorder, Signal, Trader, TraderSubAccount
from trading.serializers import (
    BrokerAccountSerializer,
    OrderSerializer,
    PositionSerializer,
    PriceSerializer,
    RecorderSerializer,
    SignalSerializer,
    TraderSerializer,
)
from trading.services import broker_accounts, prices, recorders, traders

PERMISSIONS = [permissions.IsAuthenticated, IsApprovedUser]


class OwnedViewSet(viewsets.ModelViewSet):
    """Every query is scoped to the requesting user, so someone else's object is a 404."""

    permission_classes = [permissions.IsAuthenticated, IsApprovedUser]


@method_decorator(sensitive_post_parameters("password"), name="dispatch")
class BrokerAccountViewSet(OwnedViewSet):
    """Paper accounts and Tradovate logins; `password` is write-only and tokens are never returned."""

    serializer_class = BrokerAccountSerializer
    queryset = BrokerAccount.objects.none()  # for the schema; get_queryset scopes every request

    def get_queryset(self) -> QuerySet[BrokerAccount]:
        return (
            BrokerAccount.objects.owned_by(self.request.user).prefetch_related("subaccounts").order_by("pk")
        )

    def perform_destroy(self, instance: BrokerAccount) -> None:
        broker_accounts.broker_account_delete(account=instance)


class RecorderViewSet(OwnedViewSet):
    """The user's recorders and, read-only, the public recorders of others (`?mine=true` for own only)."""

    serializer_class = RecorderSerializer
    queryset = Recorder.objects.none()

    def get_queryset(self) -> QuerySet[Recorder]:
        user = self.request.user
        mine = self.request.query_params.get("mine", "").lower() in ("1", "true", "yes")
        # Only the owner may change a recorder: for anyone else, a write finds nothing (404).
        if mine or self.request.method not in permissions.SAFE_METHODS:
            recorders = Recorder.objects.owned_by(user)
        else:
            recorders = Recorder.objects.visible_to(user)
        return recorders.select_related("owner").prefetch_related("targets").order_by("pk")

    def perform_destroy(self, instance: Recorder) -> None:
        recorders.recorder_delete(recorder=instance)

    @action(detail=True, methods=["post"], url_path="regenerate-token")
    def regenerate_token(self, request: Request, pk: str | None = None) -> Response:
        """Give the recorder a new webhook token; the old URL stops working at once."""
        recorder = self.get_object()
        recorders.recorder_regenerate_webhook_token(recorder=recorder)
        return Response(self.get_serializer(recorder).data)


class TraderViewSet(OwnedViewSet):
    """The user's traders: recorder, broker account, sub-accounts with multipliers, overrides."""

    serializer_class = TraderSerializer
    queryset = Trader.objects.none()

    def get_queryset(self) -> QuerySet[Trader]:
        return (
            Trader.objects.owned_by(self.request.user)
            .select_related("recorder", "account")
            .prefetch_related(
                "targets",
                Prefetch("subaccount_links", queryset=TraderSubAccount.objects.select_related("subaccount")),
            )
            .order_by("pk")
        )

    def perform_destroy(self, instance: Trader) -> None:
        traders.trader_delete(trader=instance)


# --- signals, orders and positions (read only) --------------------------------------------------------------


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
        signals = selectors.signal_list(
            user=self.request.user,
            recorder_id=int(recorder) if recorder and recorder.isdigit() else None,
            status=status_filter if status_filter in selectors.SIGNAL_STATUSES else None,
        )
        if recorder and not recorder.isdigit():
            signals = signals.none()
        if status_filter and status_filter not in selectors.SIGNAL_STATUSES:
            signals = signals.none()
        decisions = selectors.decisions_for(self.request.user).prefetch_related(
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
        orders = selectors.order_list(
            user=self.request.user,
            account_id=int(account) if account and account.isdigit() else None,
            status=status_filter if status_filter in selectors.ORDER_STATUSES else None,
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
        return selectors.position_list(user=self.request.user, open_only=open_only)


# --- prices -------------------------------------------------------------------------------------------------


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
