"""Forms of the trading pages; they parse input, the services validate the domain rules and save."""

from __future__ import annotations

import zoneinfo
from collections.abc import Iterable, Sequence
from functools import cache
from typing import Any

from django import forms
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.views.decorators.debug import sensitive_variables

from trading.models import (
    MAX_TP_TARGETS,
    SETTING_FIELDS,
    BrokerAccount,
    BrokerSubAccount,
    Recorder,
    Trader,
)
from trading.services.recorders import RECORDER_FIELDS

TIME_INPUT = forms.TimeInput(attrs={"type": "time", "step": 60}, format="%H:%M")
BOOLEAN_OVERRIDE_FIELDS = (
    "sl_enabled",
    "avg_down_enabled",
    "time_filter_1_enabled",
    "time_filter_2_enabled",
    "auto_flat_after_cutoff",
)
CHOICE_OVERRIDE_FIELDS = ("tp_units", "sl_units", "sl_type", "avg_down_units", "direction_filter")


@cache
def time_zone_choices() -> list[tuple[str, str]]:
    """Return every IANA time zone name, sorted, for a select."""
    return [(name, name) for name in sorted(zoneinfo.available_timezones()) if "/" in name or name == "UTC"]


def apply_service_errors(
    form: forms.Form, error: ValidationError, *, extra: forms.BaseFormSet | None = None
) -> None:
    """Show a service's ValidationError on the form: on the field it names, else above the form."""
    messages = error.message_dict if hasattr(error, "error_dict") else {NON_FIELD_ERRORS: error.messages}
    for field, field_messages in messages.items():
        for message in field_messages:
            if field in form.fields:
                form.add_error(field, message)
            elif field == "tp_targets" and extra is not None:
                extra._non_form_errors.append(message)
            else:
                form.add_error(None, message)


class ServiceModelForm(forms.ModelForm):
    """A ModelForm that only parses: the model is validated and saved by a service, with the owner known."""

    def _post_clean(self) -> None:
        # Deliberately skips construct_instance/full_clean: the service runs them with every field set.
        pass


# --- broker accounts ----------------------------------------------------------------------------------------


class BrokerAccountCreateForm(forms.Form):
    """Add a paper account, or a Tradovate login (credentials optional when connecting through OAuth)."""

    name = forms.CharField(max_length=100, help_text="A name you recognise, such as Apex 50K or Paper.")
    kind = forms.ChoiceField(
        choices=BrokerAccount.Kind.choices,
        initial=BrokerAccount.Kind.PAPER,
        widget=forms.RadioSelect,
        label="Broker",
    )
    is_demo = forms.BooleanField(
        required=False,
        initial=True,
        label="Demo environment",
        help_text="Tradovate's simulated-money environment. Untick only for a live account.",
    )
    username = forms.CharField(
        required=False,
        max_length=200,
        label="Tradovate username",
        widget=forms.TextInput(attrs={"autocomplete": "off"}),
    )
    password = forms.CharField(
        required=False,
        max_length=200,
        label="Tradovate password",
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}, render_value=False),
        help_text="Stored encrypted and never shown again.",
    )

    @sensitive_variables("data")
    def clean(self) -> dict[str, Any]:
        data = super().clean()
        if data.get("kind") == BrokerAccount.Kind.PAPER:
            # The demo switch and login belong to Tradovate; a paper account ignores what was typed there.
            data.update(is_demo=True, username="", password="")
        return data


class BrokerAccountUpdateForm(forms.Form):
    """Rename an account or change its Tradovate login; an empty password keeps the stored one."""

    name = forms.CharField(max_length=100)
    is_demo = forms.BooleanField(required=False, label="Demo environment")
    username = forms.CharField(
        required=False,
        max_length=200,
        label="Tradovate username",
        widget=forms.TextInput(attrs={"autocomplete": "off"}),
    )
    password = forms.CharField(
        required=False,
        max_length=200,
        strip=False,
        label="New Tradovate password",
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}, render_value=False),
    )

    def __init__(self, *args: Any, account: BrokerAccount, **kwargs: Any) -> None:
        kwargs.setdefault(
            "initial", {"name": account.name, "is_demo": account.is_demo, "username": account.username}
        )
        super().__init__(*args, **kwargs)
        self.account = account
        if account.is_paper:
            for name in ("is_demo", "username", "password"):
                del self.fields[name]
        else:
            self.fields["password"].help_text = (
                "A password is stored (encrypted); leave this empty to keep it."
                if account.password
                else "No password is stored."
            )


class TradovateConnectForm(forms.Form):
    """Which account a Tradovate OAuth connect is for: one of the owner's Tradovate accounts, or a new one."""

    account = forms.ModelChoiceField(
        queryset=BrokerAccount.objects.none(),
        required=False,
        empty_label="A new account",
        label="Connect",
        help_text="Reconnect one of your Tradovate accounts, or add a new one.",
    )
    name = forms.CharField(
        required=False,
        max_length=100,
        label="Name of the new account",
        help_text="A name you recognise, such as Apex 50K.",
    )

    def __init__(self, *args: Any, owner, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.owner = owner
        self.fields["account"].queryset = BrokerAccount.objects.owned_by(owner).filter(
            kind=BrokerAccount.Kind.TRADOVATE
        )

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        name = (data.get("name") or "").strip()
        if data.get("account") is None:
            if not name:
                self.add_error(
                    "name", "Give the new account a name, or choose one of your accounts to reconnect."
                )
            elif BrokerAccount.objects.owned_by(self.owner).filter(name=name).exists():
                self.add_error("name", "You already have a broker account with this name.")
        data["name"] = name
        return data


# --- take-profit targets ------------------------------------------------------------------------------------


class TargetForm(forms.Form):
    """One take-profit target row."""

    value = forms.DecimalField(
        min_value=0,
        max_digits=12,
        decimal_places=4,
        label="Distance",
        widget=forms.NumberInput(attrs={"step": "any", "class": "form-control", "aria-label": "Distance"}),
    )
    trim = forms.IntegerField(
        min_value=1,
        required=False,
        label="Contracts",
        widget=forms.NumberInput(attrs={"class": "form-control", "aria-label": "Contracts to close"}),
    )

    def clean_value(self):
        value = self.cleaned_data["value"]
        if value <= 0:
            raise ValidationError("A take-profit distance must be more than 0.")
        return value


class BaseTargetFormSet(forms.BaseFormSet):
    def targets(self) -> list[dict[str, Any]]:
        """Return the kept rows as `[{"value", "trim"}]`, in the order shown."""
        return [
            {"value": form.cleaned_data["value"], "trim": form.cleaned_data.get("trim")}
            for form in self.forms
            if form.cleaned_data and not form.cleaned_data.get("DELETE")
        ]


TargetFormSet = forms.formset_factory(
    TargetForm, formset=BaseTargetFormSet, extra=0, can_delete=True, max_num=MAX_TP_TARGETS, validate_max=True
)


def target_formset(data: Any = None, *, targets: Iterable[Any] = (), prefix: str = "tp") -> BaseTargetFormSet:
    """Return the targets formset, bound to `data` or showing the stored targets."""
    initial = [{"value": target.value.normalize(), "trim": target.trim} for target in targets]
    return TargetFormSet(data, initial=None if data is not None else initial, prefix=prefix)


# --- recorders ----------------------------------------------------------------------------------------------


class RecorderForm(ServiceModelForm):
    """Every setting of a recorder (the targets are a formset beside it)."""

    timezone = forms.ChoiceField(label="Time zone", choices=time_zone_choices)

    class Meta:
        model = Recorder
        fields = RECORDER_FIELDS
        widgets = {
            "time_filter_1_start": TIME_INPUT,
            "time_filter_1_stop": TIME_INPUT,
            "time_filter_2_start": TIME_INPUT,
            "time_filter_2_stop": TIME_INPUT,
            "symbol": forms.TextInput(
                attrs={"placeholder": "ES, NQ, ESZ6 or ES1!", "autocapitalize": "characters"}
            ),
        }
        labels = {
            "initial_position_size": "Initial position size",
            "add_position_size": "Add position size",
            "tp_units": "Take-profit units",
            "sl_enabled": "Stop loss",
            "sl_amount": "Stop loss amount",
            "sl_units": "Stop loss units",
            "sl_type": "Stop loss type",
            "avg_down_enabled": "Average down",
            "avg_down_amount": "Average-down contracts",
            "avg_down_point": "Average-down distance",
            "avg_down_units": "Average-down units",
            "time_filter_1_enabled": "Time filter 1",
            "time_filter_1_start": "Start",
            "time_filter_1_stop": "Stop",
            "time_filter_2_enabled": "Time filter 2",
            "time_filter_2_start": "Start",
            "time_filter_2_stop": "Stop",
            "signal_cooldown": "Signal cooldown (seconds)",
            "max_daily_loss": "Max daily loss ($)",
            "signal_delay_nth": "Act on every Nth signal",
            "max_signal_age": "Max signal age (seconds)",
            "is_private": "Private",
        }

    def service_fields(self) -> dict[str, Any]:
        """Return the cleaned values under the service's names."""
        return {name: self.cleaned_data[name] for name in RECORDER_FIELDS}


# --- traders ------------------------------------------------------------------------------------------------


class RecorderChoiceField(forms.ModelChoiceField):
    def label_from_instance(self, obj: Recorder) -> str:
        owner = getattr(self, "viewer", None)
        if owner is not None and obj.owner_id != owner.pk:
            return f"{obj.name} ({obj.symbol}) · public, by {obj.owner.get_username()}"
        return f"{obj.name} ({obj.symbol})"


class TraderForm(ServiceModelForm):
    """A recorder, one of the user's broker accounts and its sub-accounts, and optional overrides."""

    recorder = RecorderChoiceField(queryset=Recorder.objects.none(), label="Signal source")
    account = forms.ModelChoiceField(queryset=BrokerAccount.objects.none(), label="Broker account")
    timezone = forms.ChoiceField(label="Time zone", choices=(), required=False)
    tp_targets_overridden = forms.BooleanField(
        required=False, label="Use my own take-profit targets", help_text="Off: the recorder's targets apply."
    )

    class Meta:
        model = Trader
        fields = ("recorder", "account", "enabled", *SETTING_FIELDS, "tp_targets_overridden")
        widgets = {
            "time_filter_1_start": TIME_INPUT,
            "time_filter_1_stop": TIME_INPUT,
            "time_filter_2_start": TIME_INPUT,
            "time_filter_2_stop": TIME_INPUT,
        }
        labels = RecorderForm.Meta.labels

    def __init__(self, *args: Any, owner, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.owner = owner
        recorders = Recorder.objects.visible_to(owner).select_related("owner").prefetch_related("targets")
        self.fields["recorder"].queryset = recorders
        self.fields["recorder"].viewer = owner
        accounts = BrokerAccount.objects.owned_by(owner)
        self.fields["account"].queryset = accounts
        self.fields["timezone"].choices = [("", "Recorder's"), *time_zone_choices()]
        for name in BOOLEAN_OVERRIDE_FIELDS:
            widget = forms.NullBooleanSelect()
            widget.choices = [("unknown", "Recorder's"), ("true", "On"), ("false", "Off")]
            self.fields[name] = forms.NullBooleanField(
                required=False, label=self.fields[name].label, widget=widget
            )
        for name in CHOICE_OVERRIDE_FIELDS:
            self.fields[name].choices = [("", "Recorder's"), *self.fields[name].choices[1:]]
        for name in SETTING_FIELDS:
            field = self.fields[name]
            field.required = False
            field.widget.attrs.update({"data-override": name})
            if isinstance(field.widget, forms.TimeInput):
                # Time inputs show no placeholder: a hint under the field names the recorder's time instead.
                field.help_text = "Empty: the recorder's time."
            elif isinstance(field.widget, forms.NumberInput):
                field.widget.attrs.setdefault("placeholder", "recorder's")
        self.subaccount_rows = self._subaccount_fields(accounts)

    def _subaccount_fields(self, accounts) -> list[dict[str, Any]]:
        """Add a checkbox and a multiplier per active sub-account of each of the owner's accounts."""
        links = {}
        if self.instance.pk:
            links = {link.subaccount_id: link.multiplier for link in self.instance.subaccount_links.all()}
        rows = []
        subaccounts = BrokerSubAccount.objects.filter(account__in=accounts, active=True).select_related(
            "account"
        )
        for sub in subaccounts:
            selected, multiplier = f"sub_{sub.pk}", f"mult_{sub.pk}"
            self.fields[selected] = forms.BooleanField(
                required=False, label=sub.name, initial=sub.pk in links
            )
            self.fields[multiplier] = forms.IntegerField(
                min_value=1,
                max_value=1000,
                required=False,
                initial=links.get(sub.pk, 1),
                label="Multiplier",
                widget=forms.NumberInput(
                    attrs={"class": "form-control form-control-sm", "style": "width: 6rem"}
                ),
            )
            rows.append({"subaccount": sub, "selected": self[selected], "multiplier": self[multiplier]})
        return rows

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        account = data.get("account")
        if account is None:
            return data
        chosen: list[tuple[BrokerSubAccount, int]] = []
        for row in self.subaccount_rows:
            sub = row["subaccount"]
            if sub.account_id != account.pk or not data.get(f"sub_{sub.pk}"):
                continue
            multiplier = data.get(f"mult_{sub.pk}") or 1
            chosen.append((sub, multiplier))
        data["subaccounts"] = chosen
        return data

    def service_fields(self) -> dict[str, Any]:
        """Return the cleaned values under the service's names (targets come from the formset)."""
        fields = {name: self.cleaned_data.get(name) for name in ("enabled", *SETTING_FIELDS)}
        for name, value in fields.items():
            if value is None and name in (*CHOICE_OVERRIDE_FIELDS, "timezone"):
                fields[name] = ""
        return fields

    def subaccount_choices(self) -> Sequence[tuple[BrokerSubAccount, int]]:
        """Return the chosen (sub-account, multiplier) pairs of the chosen account."""
        return self.cleaned_data.get("subaccounts", [])
