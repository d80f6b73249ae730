"""Traders: a recorder followed on a broker account's sub-accounts, with its own settings."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from typing import Any

from django.core.exceptions import NON_FIELD_ERRORS, ValidationError

from trading.models import (
    PLAN_SETTING_FIELDS,
    RISK_SETTING_FIELDS,
    SETTING_FIELDS,
    BrokerAccount,
    BrokerSubAccount,
    Recorder,
    Trader,
    TraderSubAccount,
    TraderTarget,
)
from trading.plans import PlanSettings, TakeProfitTarget, merge_plan_settings
from trading.risk import (
    RiskSettings,
    merge_settings,
)
from trading.services.validation import (
    UNSET,
    Unset,
    check_names,
    error_add,
    errors_merge,
    errors_raise,
    restored_on_error,
    save_unique,
    target_items,
    target_rows,
    targets_clean,
    time_filter_errors,
    timezone_errors,
)

logger = logging.getLogger(__name__)


TRADER_FIELDS = ("enabled", *SETTING_FIELDS)


SubAccountChoice = tuple[BrokerSubAccount | str, int]


def _resolve_subaccounts(
    account: BrokerAccount, choices: Sequence[SubAccountChoice] | None, errors: dict[str, list]
) -> list[tuple[BrokerSubAccount, int]]:
    """Return (sub-account, multiplier) pairs of `account`, defaulting to its only active sub-account."""
    active = {row.broker_id: row for row in account.subaccounts.filter(active=True)}
    if choices is None:
        if len(active) == 1:
            return [(next(iter(active.values())), 1)]
        if not active:
            error_add(
                errors,
                "subaccounts",
                f"{account.name} has no sub-accounts yet: test the connection on the accounts page "
                "to load them "
                "from the broker.",
            )
        else:
            error_add(
                errors,
                "subaccounts",
                f"Choose which of the {len(active)} sub-accounts of {account.name} to trade.",
            )
        return []
    resolved: list[tuple[BrokerSubAccount, int]] = []
    seen: set[str] = set()
    for choice, multiplier in choices:
        broker_id = choice.broker_id if isinstance(choice, BrokerSubAccount) else str(choice)
        row = active.get(broker_id)
        if row is None or (isinstance(choice, BrokerSubAccount) and choice.account_id != account.pk):
            error_add(errors, "subaccounts", f"{broker_id} is not an active sub-account of {account.name}.")
            continue
        if broker_id in seen:
            error_add(errors, "subaccounts", f"Sub-account {row.name} is listed twice.")
            continue
        if isinstance(multiplier, bool) or not isinstance(multiplier, int) or multiplier < 1:
            error_add(
                errors, "subaccounts", f"The multiplier of {row.name} must be a whole number of at least 1."
            )
            continue
        seen.add(broker_id)
        resolved.append((row, multiplier))
    if not resolved and not errors.get("subaccounts"):
        error_add(errors, "subaccounts", "Choose at least one sub-account to trade.")
    return resolved


def _trader_errors(
    trader: Trader, owner, targets: Sequence[TakeProfitTarget] | None, errors: dict[str, list]
) -> None:
    recorder, account = trader.recorder, trader.account
    if account.owner_id != owner.pk:
        error_add(errors, "account", "Choose one of your broker accounts.")
    if recorder.owner_id != owner.pk and recorder.is_private:
        error_add(errors, "recorder", "Choose one of your recorders or a public one.")
    timezone_errors(trader.timezone, errors)
    overrides = {name: getattr(trader, name) for name in SETTING_FIELDS}
    effective = {
        name: getattr(recorder, name) if value is None or value == "" else value
        for name, value in overrides.items()
    }
    time_filter_errors(effective, errors, label=" (here or on the recorder)")
    if not errors:
        try:
            merge_settings(
                RiskSettings.from_fields({name: getattr(recorder, name) for name in RISK_SETTING_FIELDS}),
                {name: overrides[name] for name in RISK_SETTING_FIELDS},
            )
            recorder_plan = PlanSettings.from_fields(
                {
                    **{name: getattr(recorder, name) for name in PLAN_SETTING_FIELDS},
                    "tp_targets": [t.as_item() for t in recorder.targets.all()],
                }
            )
            merge_plan_settings(
                recorder_plan,
                {
                    **{name: overrides[name] for name in PLAN_SETTING_FIELDS},
                    "tp_targets": target_items(targets) if targets is not None else None,
                },
            )
        except (ValueError, TypeError) as error:
            error_add(errors, NON_FIELD_ERRORS, str(error))
    # Field checks without the foreign-key lookups (both objects are in hand), then every constraint.
    for check in (
        lambda: trader.full_clean(exclude=["recorder", "account"], validate_constraints=False),
        trader.validate_constraints,
    ):
        try:
            check()
        except ValidationError as error:
            errors_merge(errors, error)


def _save_trader(
    trader: Trader,
    *,
    targets: Sequence[TakeProfitTarget] | Unset | None,
    links: list[tuple[BrokerSubAccount, int]] | None,
) -> None:
    def save() -> None:
        trader.save()
        if targets is not UNSET:
            trader.targets.all().delete()
            TraderTarget.objects.bulk_create(target_rows(TraderTarget, {"trader": trader}, targets or []))
        if links is not None:
            trader.subaccount_links.all().delete()
            TraderSubAccount.objects.bulk_create(
                TraderSubAccount(trader=trader, subaccount=row, multiplier=multiplier)
                for row, multiplier in links
            )

    save_unique(trader, {"account": "This broker account already follows this recorder."}, save)
    if hasattr(trader, "_prefetched_objects_cache"):
        trader._prefetched_objects_cache.clear()


def trader_create(
    *,
    owner,
    recorder: Recorder,
    account: BrokerAccount,
    subaccounts: Sequence[SubAccountChoice] | None = None,
    tp_targets: Iterable[Any] | None = None,
    **fields: Any,
) -> Trader:
    """Link a recorder (own or public) to sub-accounts of one of the owner's broker accounts."""
    # `subaccounts` are (sub-account or broker id, multiplier) pairs; None picks the account's only
    # sub-account. `tp_targets` None uses the recorder's targets; a list (even empty) overrides them. Other
    # fields are `enabled` and the risk overrides under the recorder API's names (None or "" for the
    # recorder's value).
    check_names(fields, TRADER_FIELDS)
    trader = Trader(recorder=recorder, account=account, **fields)
    trader.tp_targets_overridden = tp_targets is not None
    targets = targets_clean(tp_targets) if tp_targets is not None else None
    errors: dict[str, list] = {}
    links = _resolve_subaccounts(account, subaccounts, errors) if account.owner_id == owner.pk else []
    _trader_errors(trader, owner, targets, errors)
    errors_raise(errors)
    _save_trader(trader, targets=targets if targets is not None else [], links=links)
    logger.info("Trader %s created: recorder %s on account %s", trader.pk, recorder.pk, account.pk)
    return trader


def trader_update(
    *,
    trader: Trader,
    recorder: Recorder | None = None,
    account: BrokerAccount | None = None,
    subaccounts: Sequence[SubAccountChoice] | Unset | None = UNSET,
    tp_targets: Iterable[Any] | Unset | None = UNSET,
    **fields: Any,
) -> Trader:
    """Change a trader; arguments left out stay as they are (`tp_targets=None` returns to the recorder's)."""
    check_names(fields, TRADER_FIELDS)
    with restored_on_error(trader, {"recorder", "account", "tp_targets_overridden", *fields}):
        _update_trader(trader, recorder, account, subaccounts, tp_targets, fields)
    logger.info("Trader %s updated", trader.pk)
    return trader


def _update_trader(
    trader: Trader,
    recorder: Recorder | None,
    account: BrokerAccount | None,
    subaccounts: Sequence[SubAccountChoice] | Unset | None,
    tp_targets: Iterable[Any] | Unset | None,
    fields: dict[str, Any],
) -> None:
    owner = trader.account.owner
    account_changed = account is not None and account.pk != trader.account_id
    if recorder is not None:
        trader.recorder = recorder
    if account is not None:
        trader.account = account
    for name, value in fields.items():
        setattr(trader, name, value)
    targets: Sequence[TakeProfitTarget] | Unset | None = UNSET
    if tp_targets is not UNSET:
        targets = targets_clean(tp_targets) if tp_targets is not None else None
        trader.tp_targets_overridden = tp_targets is not None
    errors: dict[str, list] = {}
    links = None
    if subaccounts is not UNSET or account_changed:
        choices = None if subaccounts is UNSET else subaccounts
        links = (
            _resolve_subaccounts(trader.account, choices, errors)
            if trader.account.owner_id == owner.pk
            else []
        )
    if targets is UNSET:
        check_targets = (
            [TakeProfitTarget(t.value, t.trim) for t in trader.targets.all()]
            if trader.tp_targets_overridden
            else None
        )
    else:
        check_targets = targets
    _trader_errors(trader, owner, check_targets, errors)
    errors_raise(errors)
    _save_trader(trader, targets=UNSET if targets is UNSET else (targets or []), links=links)


def trader_delete(*, trader: Trader) -> None:
    """Delete a trader; its recorder and broker account stay."""
    trader_id = trader.pk
    trader.delete()
    logger.info("Trader %s deleted", trader_id)
