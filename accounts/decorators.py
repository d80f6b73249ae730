"""Protection for pages of the site: signed in and approved by staff."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.conf import settings
from django.contrib.auth.mixins import AccessMixin
from django.contrib.auth.views import redirect_to_login
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

AWAITING_APPROVAL_TEMPLATE = "accounts/awaiting_approval.html"

View = Callable[..., HttpResponse]


def _refusal(request: HttpRequest, login_url: str | None) -> HttpResponse | None:
    """The answer for someone who may not see an approved-only page, or None when they may."""
    user = request.user
    if not user.is_authenticated:
        return redirect_to_login(request.get_full_path(), login_url or settings.LOGIN_URL)
    if not getattr(user, "is_approved", False):
        return render(request, AWAITING_APPROVAL_TEMPLATE, {"account": user}, status=403)
    return None


def approved_required(view: View | None = None, *, login_url: str | None = None) -> Any:
    """Like login_required, and the account must also be approved (otherwise a 403 "awaiting approval" page).

    Use bare (`@approved_required`) or with options (`@approved_required(login_url="/login")`).
    """

    def decorate(view_func: View) -> View:
        @wraps(view_func)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
            refusal = _refusal(request, login_url)
            if refusal is not None:
                return refusal
            return view_func(request, *args, **kwargs)

        return wrapper

    return decorate(view) if view is not None else decorate


class ApprovedRequiredMixin(AccessMixin):
    """The class-based form of approved_required; put it first among the view's bases."""

    def dispatch(self, request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        refusal = _refusal(request, self.get_login_url())
        if refusal is not None:
            return refusal
        return super().dispatch(request, *args, **kwargs)
