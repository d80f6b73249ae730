"""Forms of the accounts pages: access key, registration, login, profile."""

from __future__ import annotations

import re
import zoneinfo
from functools import lru_cache

from django import forms
from django.contrib.auth import authenticate
from django.contrib.auth.forms import AuthenticationForm, UserCreationForm
from django.core.exceptions import ValidationError

from accounts import keys, selectors
from accounts.models import User
from pineaccess.services.usernames import tradingview_username_check

TRADINGVIEW_USERNAME_RE = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
TRADINGVIEW_USERNAME_FORMAT_MESSAGE = (
    "A TradingView username has up to 64 letters, digits, dots, dashes or underscores, exactly as on your "
    "TradingView profile page."
)
TRADINGVIEW_USERNAME_TAKEN_MESSAGE = "This TradingView username is already linked to another account."


@lru_cache(maxsize=1)
def time_zone_choices() -> list[tuple[str, str]]:
    """Every IANA time zone, sorted, as form choices."""
    names = sorted(name for name in zoneinfo.available_timezones() if "/" in name or name == "UTC")
    return [(name, name.replace("_", " ")) for name in names]


def check_tradingview_username(value: str, *, exclude_user: User | None = None) -> tuple[str, bool]:
    """Validate a TradingView username: format, free here, and known to TradingView.

    Returns TradingView's spelling and whether TradingView confirmed it; when TradingView cannot be reached
    the typed name is kept unverified (pineaccess checks it again later). Raises ValidationError otherwise.
    """
    username = value.strip()
    if not TRADINGVIEW_USERNAME_RE.match(username):
        raise ValidationError(TRADINGVIEW_USERNAME_FORMAT_MESSAGE, code="invalid")
    if selectors.tradingview_username_taken(tradingview_username=username, exclude_user=exclude_user):
        raise ValidationError(TRADINGVIEW_USERNAME_TAKEN_MESSAGE, code="taken")
    check = tradingview_username_check(username=username)
    if check.valid is None:
        return username, False
    if not check.valid:
        raise ValidationError(check.error, code="not_found")
    spelling = check.username or username
    if spelling != username and selectors.tradingview_username_taken(
        tradingview_username=spelling, exclude_user=exclude_user
    ):
        raise ValidationError(TRADINGVIEW_USERNAME_TAKEN_MESSAGE, code="taken")
    return spelling, True


class AccessKeyForm(forms.Form):
    """The one field of the front page."""

    key = forms.CharField(
        label="Access key",
        max_length=64,
        widget=forms.TextInput(
            attrs={
                "placeholder": keys.EXAMPLE,
                "autocomplete": "off",
                "spellcheck": "false",
                "autofocus": True,
            }
        ),
    )


class RegistrationForm(UserCreationForm):
    """A new account: Django's username and password rules, an email, and one TradingView username."""

    tradingview_verified = False

    class Meta(UserCreationForm.Meta):
        model = User
        fields = ("username", "email", "tradingview_username")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["email"].required = True
        self.fields["tradingview_username"].required = True
        self.fields[
            "tradingview_username"
        ].help_text = "Exactly as on your TradingView profile; script access is granted to this name."
        # pineaccess/username-check.js checks the name with TradingView as it is typed.
        self.fields["tradingview_username"].widget.attrs.update(
            {
                "autocomplete": "off",
                "spellcheck": "false",
                "autocapitalize": "none",
                "data-tradingview-username-check": "/api/tradingview/validate-username",
            }
        )

    def clean_tradingview_username(self) -> str:
        """Check the name with TradingView and keep TradingView's spelling."""
        spelling, self.tradingview_verified = check_tradingview_username(
            self.cleaned_data["tradingview_username"]
        )
        return spelling


class LoginForm(AuthenticationForm):
    """Django's login form that also tells pending and rejected accounts apart from wrong passwords."""

    error_messages = {
        **AuthenticationForm.error_messages,
        "invalid_login": "That username and password do not match an account. Check both and try again.",
        "pending": "Your account is waiting for approval by staff.",
        "rejected": "Your registration was not approved.",
        "inactive": "This account has been deactivated. Contact us if you think this is a mistake.",
    }

    def clean(self):
        username = self.cleaned_data.get("username")
        password = self.cleaned_data.get("password")
        if username is None or not password:
            return self.cleaned_data
        self.user_cache = authenticate(self.request, username=username, password=password)
        if self.user_cache is None:
            # Deactivated (and rejected) accounts fail authenticate() like a wrong password; say which only
            # to someone who knows the password.
            candidate = User.objects.filter(username=username, is_active=False).first()
            if candidate is not None and candidate.check_password(password):
                code = "rejected" if candidate.approval_status == User.ApprovalStatus.REJECTED else "inactive"
                raise ValidationError(self.error_messages[code], code=code)
            raise self.get_invalid_login_error()
        self.confirm_login_allowed(self.user_cache)
        return self.cleaned_data

    def confirm_login_allowed(self, user: User) -> None:
        super().confirm_login_allowed(user)
        if user.approval_status == User.ApprovalStatus.PENDING:
            raise ValidationError(self.error_messages["pending"], code="pending")
        if user.approval_status == User.ApprovalStatus.REJECTED:
            raise ValidationError(self.error_messages["rejected"], code="rejected")


class ProfileForm(forms.ModelForm):
    """The details a user edits themselves."""

    time_zone = forms.ChoiceField(choices=time_zone_choices, help_text="Times on the site are shown in it.")

    class Meta:
        model = User
        fields = ("email", "first_name", "last_name", "time_zone")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["email"].required = True


class TradingViewUsernameForm(forms.Form):
    """A new TradingView username for the profile page; pineaccess checks it with TradingView and saves it."""

    tradingview_username = forms.CharField(label="New TradingView username", max_length=64)

    def __init__(self, *args, user: User, **kwargs):
        super().__init__(*args, **kwargs)
        self.user = user

    def clean_tradingview_username(self) -> str:
        """Refuse the current name and names another account holds before asking TradingView."""
        value = self.cleaned_data["tradingview_username"].strip()
        if value == (self.user.tradingview_username or ""):
            raise ValidationError("That is already your TradingView username.", code="unchanged")
        if not TRADINGVIEW_USERNAME_RE.match(value):
            raise ValidationError(TRADINGVIEW_USERNAME_FORMAT_MESSAGE, code="invalid")
        if selectors.tradingview_username_taken(tradingview_username=value, exclude_user=self.user):
            raise ValidationError(TRADINGVIEW_USERNAME_TAKEN_MESSAGE, code="taken")
        return value
