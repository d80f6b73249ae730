"""API permissions: the API counterpart of approved_required."""

from __future__ import annotations

from typing import Any

from rest_framework.permissions import BasePermission
from rest_framework.request import Request


class IsApprovedUser(BasePermission):
    """Signed in (token or session), active and approved by staff."""

    message = "Your account is waiting for approval by staff; the API opens once it is approved."

    def has_permission(self, request: Request, view: Any) -> bool:
        user = request.user
        return bool(user and user.is_authenticated and user.is_active and getattr(user, "is_approved", False))
