"""Pages of the front door: access key, registration, login and logout, profile."""

from __future__ import annotations

from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login, logout
from django.core.exceptions import ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.cache import never_cache
from django.views.decorators.debug import sensitive_post_parameters
from django.views.decorators.http import require_http_methods, require_POST, require_safe

from accounts import ratelimit, selectors, services
from accounts.decorators import AWAITING_APPROVAL_TEMPLATE, approved_required
from accounts.forms import AccessKeyForm, LoginForm, ProfileForm, RegistrationForm, TradingViewUsernameForm
from accounts.models import User
from accounts.selectors import AccessKeyRefused
from pineaccess.services.usernames import tradingview_username_change, username_check_allow

SESSION_ACCESS_KEY = "accounts.access_key_id"
MANAGE_URL = "/manage"
UNVERIFIED_MESSAGE = (
    "TradingView could not be reached to confirm your TradingView username; it will be checked again shortly."
)
TRADINGVIEW_USERNAME_LOCKED_MESSAGE = (
    "Your TradingView username cannot change while script access granted to it is pending, active, failed or "
    "being removed. It can change once all of that access has been removed."
)


def too_many_attempts(request: HttpRequest, limited: ratelimit.Limited, *, what: str) -> HttpResponse:
    """The 429 page for someone who used up their attempts."""
    response = render(
        request,
        "429.html",
        {"what": what, "minutes": limited.minutes, "retry_after": limited.retry_after},
        status=429,
    )
    response["Retry-After"] = str(limited.retry_after)
    return response


@require_safe
def home(request: HttpRequest) -> HttpResponse:
    """The access key form and a login link."""
    return render(request, "accounts/home.html", {"form": AccessKeyForm()})


@never_cache
@sensitive_post_parameters("key")
@require_POST
def validate_key(request: HttpRequest) -> HttpResponse:
    """Check a typed key: start registration with it, or add its scripts to the signed-in account."""
    user = request.user
    if user.is_authenticated and not user.is_approved:
        return render(request, AWAITING_APPROVAL_TEMPLATE, {"account": user}, status=403)
    identities = [ratelimit.ip_identity(request)]
    if user.is_authenticated:
        identities.append(ratelimit.account_identity(user.get_username()))
    limited = ratelimit.check(ratelimit.ACCESS_KEY, identities)
    if limited is not None:
        return too_many_attempts(request, limited, what="access key")

    form = AccessKeyForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Enter the access key you were given.")
        return redirect("home")
    redemption = None
    try:
        access_key = selectors.access_key_check(raw_key=form.cleaned_data["key"])
        if user.is_authenticated:
            # Signed in already: the key adds its scripts to this account at once.
            redemption = services.access_key_redeem(access_key_id=access_key.pk, user=user)
    except AccessKeyRefused as refusal:
        ratelimit.record_failure(ratelimit.ACCESS_KEY, identities)
        messages.error(request, refusal.message)
        return redirect("home")
    except ValidationError as error:
        # The key is fine but its scripts cannot be granted to this account (no TradingView username yet).
        messages.error(request, " ".join(error.messages) + " The key was not used.")
        return redirect("profile")

    if redemption is not None:
        if redemption.accesses:
            messages.success(
                request,
                "Key accepted. Its scripts are being granted on TradingView; follow their status below.",
            )
        else:
            messages.info(request, "Key accepted. It grants no scripts, so nothing changed on TradingView.")
        return redirect(MANAGE_URL)
    request.session[SESSION_ACCESS_KEY] = access_key.pk
    messages.success(request, "Key accepted. Create your account to redeem it.")
    return redirect("register")


@never_cache
@sensitive_post_parameters("password1", "password2")
@require_http_methods(["GET", "POST"])
def register(request: HttpRequest) -> HttpResponse:
    """Create an account with the validated key (or without one while registration is open)."""
    if request.user.is_authenticated:
        return redirect("profile")
    access_key_id = request.session.get(SESSION_ACCESS_KEY)
    access_key = None
    if access_key_id is not None:
        try:
            access_key = selectors.access_key_usable(access_key_id=access_key_id)
        except AccessKeyRefused as refusal:
            request.session.pop(SESSION_ACCESS_KEY, None)
            messages.error(request, refusal.message)
            return redirect("home")
    elif not getattr(settings, "REGISTRATION_OPEN", False):
        messages.info(request, services.RegistrationClosed.message)
        return redirect("home")

    # Lets the page check the TradingView username as it is typed, before the visitor has an account.
    username_check_allow(request.session)
    form = RegistrationForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            user = services.user_register(
                username=form.cleaned_data["username"],
                email=form.cleaned_data["email"],
                password=form.cleaned_data["password1"],
                tradingview_username=form.cleaned_data["tradingview_username"],
                tradingview_verified=form.tradingview_verified,
                access_key_id=access_key.pk if access_key is not None else None,
            )
        except AccessKeyRefused as refusal:
            request.session.pop(SESSION_ACCESS_KEY, None)
            messages.error(request, f"{refusal.message} Your account was not created.")
            return redirect("home")
        except services.RegistrationConflict as conflict:
            form.add_error(None, conflict.message)
        except ValidationError as error:
            form.add_error(None, error)
        else:
            request.session.pop(SESSION_ACCESS_KEY, None)
            return _registered(request, user)
    scripts = selectors.access_key_scripts_to_grant(access_key=access_key) if access_key is not None else []
    return render(
        request,
        "accounts/register.html",
        {"form": form, "access_key": access_key, "scripts": scripts},
        status=400 if form.is_bound else 200,
    )


def _registered(request: HttpRequest, user: User) -> HttpResponse:
    """Sign in an approved newcomer; tell a pending one to wait."""
    if not user.tradingview_verified:
        messages.warning(request, UNVERIFIED_MESSAGE)
    if user.is_approved:
        login(request, user, backend="django.contrib.auth.backends.ModelBackend")
        if selectors.user_has_live_script_access(user=user):
            messages.success(
                request,
                "Welcome to JustTrades. Your script access is being granted on TradingView; see it below.",
            )
        else:
            messages.success(request, "Welcome to JustTrades. Your account is ready.")
        return redirect(MANAGE_URL)
    return render(request, AWAITING_APPROVAL_TEMPLATE, {"account": user, "just_registered": True})


@never_cache
@sensitive_post_parameters("password")
@require_http_methods(["GET", "POST"])
def login_view(request: HttpRequest) -> HttpResponse:
    """Sign in; pending and rejected accounts get their own answers, repeated failures a 429."""
    next_url = request.POST.get("next") or request.GET.get("next") or ""
    if not url_has_allowed_host_and_scheme(next_url, {request.get_host()}, request.is_secure()):
        next_url = ""
    if request.user.is_authenticated and request.method == "GET":
        return redirect(next_url or settings.LOGIN_REDIRECT_URL)

    form = LoginForm(request, data=request.POST or None)
    if request.method == "POST":
        typed_username = request.POST.get("username", "")
        identities = [ratelimit.ip_identity(request), ratelimit.account_identity(typed_username)]
        limited = ratelimit.check(ratelimit.LOGIN, identities)
        if limited is not None:
            return too_many_attempts(request, limited, what="login")
        if form.is_valid():
            ratelimit.reset(ratelimit.LOGIN, identities[1:])
            login(request, form.get_user())
            return redirect(next_url or settings.LOGIN_REDIRECT_URL)
        if form.has_error("__all__", "pending"):
            return render(request, AWAITING_APPROVAL_TEMPLATE, {"account": form.get_user()}, status=403)
        if form.has_error("__all__", "rejected"):
            return render(request, "accounts/rejected.html", status=403)
        if form.has_error("__all__", "invalid_login"):
            ratelimit.record_failure(ratelimit.LOGIN, identities)
    status = 400 if form.is_bound else 200
    return render(request, "accounts/login.html", {"form": form, "next": next_url}, status=status)


@require_POST
def logout_view(request: HttpRequest) -> HttpResponse:
    """Sign out (POST only, so a link elsewhere cannot sign anyone out)."""
    logout(request)
    messages.info(request, "You have been logged out.")
    return redirect(settings.LOGOUT_REDIRECT_URL)


@never_cache
@approved_required
@require_http_methods(["GET", "POST"])
def profile(request: HttpRequest) -> HttpResponse:
    """The user's details, TradingView username, status, redeemed keys and API token."""
    user = request.user
    form = ProfileForm(request.POST or None, instance=user)
    if request.method == "POST" and form.is_valid():
        services.user_profile_update(user=user, **form.cleaned_data)
        messages.success(request, "Your details were saved.")
        return redirect("profile")
    return _render_profile(request, profile_form=form, status=400 if form.is_bound else 200)


@never_cache
@approved_required
@require_POST
def profile_tradingview_username(request: HttpRequest) -> HttpResponse:
    """Bind a different TradingView username, once no script access is granted to the current one."""
    user = request.user
    if selectors.user_has_live_script_access(user=user):
        messages.error(request, TRADINGVIEW_USERNAME_LOCKED_MESSAGE)
        return redirect("profile")
    form = TradingViewUsernameForm(request.POST, user=user)
    if form.is_valid():
        try:
            tradingview_username_change(
                user=user, username=form.cleaned_data["tradingview_username"], requested_by=user
            )
        except ValidationError as error:
            form.add_error("tradingview_username", error)
        else:
            messages.success(request, f"Your TradingView username is now {user.tradingview_username}.")
            if not user.tradingview_verified:
                messages.warning(request, UNVERIFIED_MESSAGE)
            return redirect("profile")
    return _render_profile(request, tradingview_form=form, status=400)


@never_cache
@approved_required
@require_POST
def profile_api_token(request: HttpRequest) -> HttpResponse:
    """Create the API token, or replace it with a new one."""
    had_token = selectors.user_api_token(user=request.user) is not None
    services.api_token_rotate(user=request.user)
    if had_token:
        messages.success(request, "A new API token replaces the old one, which no longer works.")
    else:
        messages.success(request, "Your API token was created.")
    return redirect("profile")


def _render_profile(
    request: HttpRequest,
    *,
    profile_form: ProfileForm | None = None,
    tradingview_form: TradingViewUsernameForm | None = None,
    status: int = 200,
) -> HttpResponse:
    user = request.user
    locked = selectors.user_has_live_script_access(user=user)
    context = {
        "profile_form": profile_form or ProfileForm(instance=user),
        "tradingview_form": tradingview_form or TradingViewUsernameForm(user=user),
        "tradingview_locked": locked,
        "redeemed_keys": selectors.user_redeemed_keys(user=user),
        "api_token": selectors.user_api_token(user=user),
    }
    return render(request, "accounts/profile.html", context, status=status)
