"""JSON API of broker accounts, recorders and traders: owner-scoped, token or session, paginated."""

from __future__ import annotations

from django.db.models import Prefetch, QuerySet
from django.utils.decorators import method_decorator
from django.views.decorators.debug import sensitive_post_parameters
from rest_framework import permissions, viewsets
from rest_framework.decorators import action
from rest_framework.request import Request
from rest_framework.response import Response

from accounts.permissions import IsApprovedUser
from trading.models import BrokerAccount, Recorder, Trader, TraderSubAccount
from trading.serializers import BrokerAccountSerializer, RecorderSerializer, TraderSerializer
from trading.services import broker_accounts, recorders, traders


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
