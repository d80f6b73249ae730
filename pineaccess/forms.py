"""Forms for the buyer's pages and the operator console."""

from __future__ import annotations

from django import forms
from django.contrib.auth import get_user_model

from pineaccess.services.usernames import TRADINGVIEW_USERNAME_MAX_LENGTH


class TradingViewUsernameForm(forms.Form):
    tradingview_username = forms.CharField(
        label="New TradingView username",
        max_length=TRADINGVIEW_USERNAME_MAX_LENGTH,
        help_text="Exactly as shown on your TradingView profile page; it is checked with TradingView.",
        widget=forms.TextInput(
            attrs={
                "autocomplete": "off",
                "spellcheck": "false",
                "autocapitalize": "none",
                "data-tradingview-username-check": "/api/tradingview/validate-username",
            }
        ),
    )


class GrantToUsersForm(forms.Form):
    """Admin: grant the selected scripts to users for some days or for life."""

    users = forms.ModelMultipleChoiceField(
        queryset=get_user_model().objects.none(),
        widget=forms.SelectMultiple(attrs={"size": 12}),
        help_text="Only users with a TradingView username are listed.",
    )
    days = forms.IntegerField(min_value=1, required=False, help_text="Leave empty for lifetime access.")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["users"].queryset = (
            get_user_model()
            .objects.filter(is_active=True, tradingview_username__isnull=False)
            .exclude(tradingview_username="")
            .order_by("username")
        )
        self.fields["users"].label_from_instance = lambda user: (
            f"{user.get_username()} (TradingView: {user.tradingview_username})"
        )


class ExtendAccessForm(forms.Form):
    """Admin: add days to the selected access, or make it lifetime."""

    days = forms.IntegerField(min_value=1, required=False, help_text="Days to add to each access.")
    lifetime = forms.BooleanField(required=False, help_text="Make the access lifetime instead.")

    def clean(self):
        cleaned = super().clean()
        if bool(cleaned.get("days")) == bool(cleaned.get("lifetime")):
            raise forms.ValidationError("Enter a number of days, or tick lifetime (not both).")
        return cleaned


class TradingViewSessionForm(forms.Form):
    """Admin: paste the session cookies of a browser logged in to the seller's TradingView account."""

    sessionid = forms.CharField(
        label="sessionid",
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text="The value of the sessionid cookie of tradingview.com (browser developer tools → Cookies).",
    )
    sessionid_sign = forms.CharField(
        label="sessionid_sign",
        required=False,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text="The value of the sessionid_sign cookie, when the browser has one.",
    )
