"""API endpoints: an API token for approved users, and access keys for staff."""

from __future__ import annotations

from django.contrib.auth import authenticate
from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import ValidationError
from rest_framework.permissions import AllowAny, IsAdminUser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from accounts import ratelimit, selectors, services
from accounts.models import AccessKey, User
from accounts.permissions import IsApprovedUser
from accounts.serializers import (
    AccessKeyCreateSerializer,
    AccessKeySerializer,
    IssuedAccessKeysSerializer,
    TokenRequestSerializer,
    TokenSerializer,
)


class TokenView(APIView):
    """Exchange a username and password for the API token of an approved account."""

    authentication_classes: list = []  # credentials are the body; no session means no CSRF to trip over
    permission_classes = [AllowAny]
    serializer_class = TokenRequestSerializer

    @extend_schema(request=TokenRequestSerializer, responses={200: TokenSerializer})
    def post(self, request: Request) -> Response:
        serializer = TokenRequestSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        username = serializer.validated_data["username"]
        identities = [ratelimit.ip_identity(request), ratelimit.account_identity(username)]
        limited = ratelimit.check(ratelimit.LOGIN, identities)
        if limited is not None:
            return Response(
                {"detail": f"Too many failed logins. Wait {limited.minutes} minutes and try again."},
                status=status.HTTP_429_TOO_MANY_REQUESTS,
                headers={"Retry-After": str(limited.retry_after)},
            )
        user = authenticate(request, username=username, password=serializer.validated_data["password"])
        if user is None:
            ratelimit.record_failure(ratelimit.LOGIN, identities)
            return Response(
                {"detail": "That username and password do not match an active account."},
                status=status.HTTP_400_BAD_REQUEST,
            )
        ratelimit.reset(ratelimit.LOGIN, identities[1:])
        if user.approval_status != User.ApprovalStatus.APPROVED:
            return Response(
                {"detail": IsApprovedUser.message},
                status=status.HTTP_403_FORBIDDEN,
            )
        token = services.api_token_get_or_create(user=user)
        return Response({"token": token.key}, headers={"Cache-Control": "no-store"})


@extend_schema_view(
    list=extend_schema(
        parameters=[
            OpenApiParameter("state", str, enum=[state.value for state in AccessKey.State], required=False)
        ]
    ),
    create=extend_schema(request=AccessKeyCreateSerializer, responses={201: IssuedAccessKeysSerializer}),
    revoke=extend_schema(request=None, responses={200: AccessKeySerializer}),
)
class AccessKeyViewSet(
    mixins.ListModelMixin, mixins.RetrieveModelMixin, mixins.CreateModelMixin, viewsets.GenericViewSet
):
    """Staff: create keys (the raw keys are in the create answer only), list them, revoke unused ones."""

    permission_classes = [IsAdminUser]
    serializer_class = AccessKeySerializer

    def get_queryset(self):
        keys = selectors.access_key_list()
        state = self.request.query_params.get("state")
        if state and self.action == "list":
            if state not in AccessKey.State.values:
                raise ValidationError({"state": f"Use one of {', '.join(AccessKey.State.values)}."})
            keys = keys.in_state(state)
        return keys

    def get_serializer_class(self):
        if self.action == "create":
            return AccessKeyCreateSerializer
        return AccessKeySerializer

    def create(self, request: Request, *args, **kwargs) -> Response:
        serializer = AccessKeyCreateSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        try:
            issued = services.access_keys_create(
                count=data["count"],
                scripts=data["scripts"],
                access_days=data["days"],
                note=data["note"],
                auto_approve=data["auto_approve"],
                valid_until=data["valid_until"],
                created_by=request.user,
            )
        except DjangoValidationError as error:
            raise ValidationError(_drf_errors(error)) from error
        stored = selectors.access_key_list().in_bulk([item.access_key.pk for item in issued])
        issued = [services.IssuedAccessKey(stored[item.access_key.pk], item.raw_key) for item in issued]
        body = IssuedAccessKeysSerializer({"count": len(issued), "keys": issued}).data
        return Response(body, status=status.HTTP_201_CREATED, headers={"Cache-Control": "no-store"})

    @action(detail=True, methods=["post"])
    def revoke(self, request: Request, pk: str | None = None) -> Response:
        """Revoke an unused key."""
        access_key = self.get_object()
        if not services.access_keys_revoke(access_keys=[access_key], revoked_by=request.user):
            return Response(
                {"detail": f"Only unused keys can be revoked; this one is {access_key.state}."},
                status=status.HTTP_409_CONFLICT,
            )
        return Response(AccessKeySerializer(selectors.access_key_list().get(pk=access_key.pk)).data)


def _drf_errors(error: DjangoValidationError) -> dict | list:
    """Django's ValidationError in the field names of the API."""
    if not hasattr(error, "error_dict"):
        return error.messages
    renamed = {"access_days": "days"}
    return {renamed.get(field, field): messages for field, messages in error.message_dict.items()}


token_view = TokenView.as_view()
access_key_list_view = AccessKeyViewSet.as_view({"get": "list", "post": "create"})
access_key_detail_view = AccessKeyViewSet.as_view({"get": "retrieve"})
access_key_revoke_view = AccessKeyViewSet.as_view({"post": "revoke"})
