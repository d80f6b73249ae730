"""JSON API for scripts, access and username checks: thin views over services and selectors."""

from __future__ import annotations

import hashlib

from django.conf import settings
from django.core.cache import cache
from django.core.exceptions import ValidationError as DjangoValidationError
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, permissions, status, viewsets
from rest_framework.decorators import action
from rest_framework.exceptions import PermissionDenied
from rest_framework.exceptions import ValidationError as DRFValidationError
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import SimpleRateThrottle
from rest_framework.views import APIView

from pineaccess import selectors
from pineaccess.models import Actor, PineScript, ScriptAccess
from pineaccess.serializers import (
    PineScriptSerializer,
    ScriptAccessChangeSerializer,
    ScriptAccessGrantSerializer,
    ScriptAccessSerializer,
    UsernameCheckSerializer,
)
from pineaccess.services.access import (
    script_access_extend,
    script_access_grant,
    script_access_retry,
    script_access_revoke,
    script_access_set_expiry,
)
from pineaccess.services.scripts import pine_script_create, pine_script_delete, pine_script_update
from pineaccess.services.usernames import USERNAME_CHECK_SESSION_KEY, tradingview_username_check

USERNAME_CHECK_CACHE_SECONDS = 300


def _service(call, *args, **kwargs):
    """Run a service and answer its ValidationError as a 400 with the message."""
    try:
        return call(*args, **kwargs)
    except DjangoValidationError as error:
        raise DRFValidationError({"detail": " ".join(error.messages)}) from error


class IsStaffOrReadOnly(permissions.BasePermission):
    message = "Only staff can change scripts and access."

    def has_permission(self, request: Request, view) -> bool:
        return request.method in permissions.SAFE_METHODS or bool(request.user and request.user.is_staff)


class PineScriptViewSet(viewsets.ModelViewSet):
    """Scripts: staff manage the catalogue; a user sees the scripts they have access to."""

    serializer_class = PineScriptSerializer
    permission_classes = [permissions.IsAuthenticated, IsStaffOrReadOnly]

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation has no user
            return PineScript.objects.none()
        return selectors.pine_scripts_visible_to(user=self.request.user).order_by("name", "pk")

    def perform_create(self, serializer: PineScriptSerializer) -> None:
        serializer.instance = _service(pine_script_create, **serializer.validated_data)

    def perform_update(self, serializer: PineScriptSerializer) -> None:
        changes = {k: v for k, v in serializer.validated_data.items() if k != "pine_id"}
        serializer.instance = _service(
            pine_script_update, script=serializer.instance, requested_by=self.request.user, **changes
        )

    def perform_destroy(self, instance) -> None:
        _service(pine_script_delete, script=instance)


class ScriptAccessViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Access rows: staff grant, extend, revoke and retry; a user reads their own."""

    serializer_class = ScriptAccessSerializer
    permission_classes = [permissions.IsAuthenticated, IsStaffOrReadOnly]
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def get_queryset(self):
        if getattr(self, "swagger_fake_view", False):  # schema generation has no user
            return ScriptAccess.objects.none()
        rows = selectors.script_accesses_visible_to(user=self.request.user).order_by("-created_at", "-pk")
        params = self.request.query_params
        if params.get("status"):
            rows = rows.filter(status=params["status"])
        if params.get("script"):
            rows = rows.filter(script__pk=params["script"]) if params["script"].isdigit() else rows.none()
        if params.get("user") and self.request.user.is_staff:
            rows = rows.filter(user__pk=params["user"]) if params["user"].isdigit() else rows.none()
        return rows

    @extend_schema(request=ScriptAccessGrantSerializer, responses={201: ScriptAccessSerializer})
    def create(self, request: Request, *args, **kwargs) -> Response:
        grant = ScriptAccessGrantSerializer(data=request.data)
        grant.is_valid(raise_exception=True)
        data = grant.validated_data
        [row] = _service(
            script_access_grant,
            user=data["user"],
            scripts=[data["script"]],
            duration_days=data["days"],
            requested_by=request.user,
        )
        return Response(self.get_serializer(row).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=ScriptAccessChangeSerializer, responses={200: ScriptAccessSerializer})
    def partial_update(self, request: Request, *args, **kwargs) -> Response:
        row = self.get_object()
        change = ScriptAccessChangeSerializer(data=request.data)
        change.is_valid(raise_exception=True)
        if "days" in change.validated_data:
            row = _service(
                script_access_extend,
                access=row,
                days=change.validated_data["days"],
                requested_by=request.user,
            )
        else:
            row = _service(
                script_access_set_expiry,
                access=row,
                expires_at=change.validated_data["expires_at"],
                requested_by=request.user,
            )
        return Response(self.get_serializer(row).data)

    def update(self, request: Request, *args, **kwargs) -> Response:
        if not kwargs.get("partial"):
            raise PermissionDenied("Use PATCH with days or expires_at.")
        return super().update(request, *args, **kwargs)

    @extend_schema(responses={202: ScriptAccessSerializer})
    def destroy(self, request: Request, *args, **kwargs) -> Response:
        """Revoke: the row goes to removing now and to removed once TradingView confirms."""
        row = script_access_revoke(access=self.get_object(), requested_by=request.user)
        return Response(self.get_serializer(row).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=None, responses={202: ScriptAccessSerializer})
    @action(detail=True, methods=["post"])
    def retry(self, request: Request, pk=None) -> Response:
        """Queue a failed grant again."""
        row = self.get_object()
        if not script_access_retry(access=row, requested_by=request.user):
            raise DRFValidationError(
                {"detail": f"Only failed access can be retried; this one is {row.status}."}
            )
        row.refresh_from_db()
        return Response(self.get_serializer(row).data, status=status.HTTP_202_ACCEPTED)


class UsernameCheckThrottle(SimpleRateThrottle):
    """Per user (or per address when registering) limit on username checks."""

    scope = "tradingview_username"

    def __init__(self):
        self.rate = f"{getattr(settings, 'TRADINGVIEW_USERNAME_CHECKS_PER_MINUTE', 20)}/min"
        super().__init__()

    def get_cache_key(self, request: Request, view) -> str:
        ident = request.user.pk if request.user.is_authenticated else self.get_ident(request)
        return self.cache_format % {"scope": self.scope, "ident": ident}


class MayCheckUsername(permissions.BasePermission):
    message = "Log in, or enter an access key to start registering, to check a TradingView username."

    def has_permission(self, request: Request, view) -> bool:
        if request.user and request.user.is_authenticated:
            return True
        session = getattr(request, "session", None)
        return bool(session is not None and session.get(USERNAME_CHECK_SESSION_KEY))


class ValidateUsernameView(APIView):
    """GET ?username= → {"valid": true, "username": <TradingView's spelling>} or {"valid": false, "error"}."""

    permission_classes = [MayCheckUsername]
    throttle_classes = [UsernameCheckThrottle]

    @extend_schema(
        parameters=[OpenApiParameter("username", str, required=True)],
        responses={200: UsernameCheckSerializer, 400: UsernameCheckSerializer},
    )
    def get(self, request: Request) -> Response:
        text = request.query_params.get("username", "").strip()
        if not text:
            return Response({"valid": False, "error": "Enter a TradingView username."}, status=400)
        key = "pineaccess:tv-username:" + hashlib.sha256(text.casefold().encode()).hexdigest()
        cached = cache.get(key)
        if cached is None:
            requested_by = request.user if request.user.is_authenticated else None
            # Someone registering has no account yet, but is a user, not the system.
            check = tradingview_username_check(
                username=text, requested_by=requested_by, actor=None if requested_by else Actor.USER
            )
            cached = {"valid": check.valid, "username": check.username, "error": check.error}
            if check.valid is not None:
                # An unreachable TradingView is not remembered: the next keystroke asks again.
                cache.set(key, cached, USERNAME_CHECK_CACHE_SECONDS)
        if cached["valid"]:
            return Response({"valid": True, "username": cached["username"]})
        return Response({"valid": cached["valid"], "error": cached["error"]})
