"""Writes of the trading domain: broker accounts, recorders, traders and recorders' virtual performance."""

from __future__ import annotations

import logging
import secrets
import zoneinfo
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings as django_settings
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from trading.brokers.base import AccountBalance, BrokerError, BrokerNeedsAttention, SubAccount
from trading.brokers.registry import broker_for_account, tradovate_timeout
from trading.brokers.tradovate import LOCKED_OUT_REASON, exchange_oauth_code
from trading.models import (
    MAX_TP_TARGETS,
    PLAN_SETTING_FIELDS,
    RISK_SETTING_FIELDS,
    SETTING_FIELDS,
    BrokerAccount,
    BrokerSubAccount,
    Recorder,
    RecorderPosition,
    RecorderTarget,
    RecorderTrade,
    Trader,
    TraderSubAccount,
    TraderTarget,
)
from trading.plans import PlanSettings, TakeProfitTarget, merge_plan_settings
from trading.risk import (
    Action,
    Decision,
    RecorderBook,
    RiskSettings,
    RiskState,
    Signal,
    evaluate,
    merge_settings,
)
from trading.risk import session_key as trading_day
from trading.selectors import (
    contract_for_symbol,
    position_risk_state,
    recorder_risk_settings,
    webhook_token_digest,
)
from trading.symbols import ContractInfo, SymbolError, symbol_root, to_decimal

logger = logging.getLogger(__name__)

RECORDER_FIELDS = (
    "name",
    "strategy_type",
    "symbol",
    "enabled",
    "recording_enabled",
    "is_private",
    "max_signal_age",
    *SETTING_FIELDS,
)
TRADER_FIELDS = ("enabled", *SETTING_FIELDS)
WEBHOOK_TOKEN_BYTES = 32  # 256 bits; the brief asks for at least 128
CAPTCHA_REASON = "captcha"
TRADOVATE_PAUSE = timedelta(hours=1)


class _Unset:
    def __repr__(self) -> str:
        return "UNSET"


UNSET: Any = _Unset()  # "leave as it is", where None is a meaningful value


def new_webhook_token() -> str:
    """Return a fresh webhook token: 32 random bytes, URL-safe (43 characters)."""
    return secrets.token_urlsafe(WEBHOOK_TOKEN_BYTES)


# --- validation helpers -------------------------------------------------------------------------------------


def _check_names(values: Mapping[str, Any], allowed: Sequence[str]) -> None:
    unknown = sorted(set(values) - set(allowed))
    if unknown:
        raise TypeError(f"Unknown field(s): {', '.join(unknown)}.")


def _add(errors: dict[str, list], field: str, message: str) -> None:
    errors.setdefault(field, []).append(message)


def _merge_validation(errors: dict[str, list], error: ValidationError) -> None:
    for field, messages in error.message_dict.items():
        for message in messages:
            if message not in errors.get(field, []):
                _add(errors, field, message)


def _clean_targets(items: Iterable[Any] | None) -> list[TakeProfitTarget]:
    """Return take-profit targets from `[{"value": 8, "trim": 1}]`, or raise ValidationError on tp_targets."""
    if items is None:
        return []
    if isinstance(items, (str, bytes, Mapping)) or not isinstance(items, Iterable):
        raise ValidationError(
            {"tp_targets": 'Take-profit targets must be a list such as [{"value": 8, "trim": 1}].'}
        )
    items = list(items)
    if len(items) > MAX_TP_TARGETS:
        raise ValidationError(
            {"tp_targets": f"At most {MAX_TP_TARGETS} take-profit targets, not {len(items)}."}
        )
    targets = []
    for number, item in enumerate(items, start=1):
        try:
            target = TakeProfitTarget.parse(item)
        except (ValueError, TypeError) as error:
            raise ValidationError({"tp_targets": f"Target {number}: {error}"}) from None
        if -target.value.as_tuple().exponent > 4 or target.value >= 10**8:
            raise ValidationError(
                {"tp_targets": f"Target {number}: a distance has at most 8 digits and 4 decimal places."}
            )
        targets.append(target)
    return targets


def _target_rows(model: type, parent: dict, targets: Sequence[TakeProfitTarget]) -> list:
    return [
        model(number=number, value=target.value, trim=target.trim, **parent)
        for number, target in enumerate(targets, start=1)
    ]


def _target_items(targets: Sequence[TakeProfitTarget]) -> list[dict]:
    return [{"value": target.value, "trim": target.trim} for target in targets]


def _time_filter_errors(values: Mapping[str, Any], errors: dict[str, list], *, label: str = "") -> None:
    """Check that each time filter that is on has a start and a different stop (on the effective values)."""
    for number in (1, 2):
        prefix = f"time_filter_{number}"
        if not values.get(f"{prefix}_enabled"):
            continue
        start, stop = values.get(f"{prefix}_start"), values.get(f"{prefix}_stop")
        if start is None:
            _add(errors, f"{prefix}_start", f"Time filter {number} is on: give it a start time{label}.")
        if stop is None:
            _add(errors, f"{prefix}_stop", f"Time filter {number} is on: give it a stop time{label}.")
        if start is not None and start == stop:
            _add(
                errors,
                f"{prefix}_stop",
                f"Time filter {number} starts and stops at the same time: make them differ, or turn it off.",
            )


def _timezone_errors(name: str | None, errors: dict[str, list]) -> None:
    if not name:
        return
    try:
        zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        _add(errors, "timezone", f"Unknown time zone {name!r}: use a name such as America/Chicago.")


def _settings_errors(risk: dict, plan: dict, errors: dict[str, list]) -> None:
    """Build the pure settings once, so nothing saved can later fail inside the risk engine or the plans."""
    for build in (lambda: RiskSettings.from_fields(risk), lambda: PlanSettings.from_fields(plan)):
        try:
            build()
        except (ValueError, TypeError) as error:
            _add(errors, NON_FIELD_ERRORS, str(error))


def _full_clean(instance: Any, errors: dict[str, list]) -> None:
    """Add the model's field errors, then its constraints' unless a field check explained the problem."""
    try:
        instance.full_clean(validate_constraints=False)
    except ValidationError as error:
        _merge_validation(errors, error)
    if not errors:
        try:
            instance.validate_constraints()
        except ValidationError as error:
            _merge_validation(errors, error)


def _raise(errors: dict[str, list]) -> None:
    if errors:
        raise ValidationError(errors)


@contextmanager
def _restored_on_error(instance: Any, names: Iterable[str]) -> Iterator[None]:
    """Put the named attributes back if the block fails: a refused change leaves the object as it was."""
    saved = {name: getattr(instance, name) for name in names}
    try:
        yield
    except (ValidationError, IntegrityError):
        for name, value in saved.items():
            setattr(instance, name, value)
        raise


# --- broker accounts ----------------------------------------------------------------------------------------


def _paper_subaccount(account: BrokerAccount) -> BrokerSubAccount:
    return BrokerSubAccount.objects.create(account=account, broker_id=f"paper-{account.pk}", name="Paper")


def _credential_errors(account: BrokerAccount, errors: dict[str, list]) -> None:
    if account.kind == BrokerAccount.Kind.PAPER:
        if account.username or account.password:
            _add(errors, "username", "A paper account has no login: leave the username and password empty.")
        if not account.is_demo:
            _add(errors, "is_demo", "A paper account is simulated: it cannot be live.")
    elif bool(account.username) != bool(account.password):
        missing = "password" if account.username else "username"
        _add(
            errors,
            missing,
            f"Give both the Tradovate username and password, or neither to connect through OAuth "
            f"(the {missing} is missing).",
        )


@sensitive_variables("password", "username")
def broker_account_create(
    *,
    owner,
    name: str,
    kind: str = BrokerAccount.Kind.PAPER,
    is_demo: bool = True,
    username: str = "",
    password: str = "",
) -> BrokerAccount:
    """Create a broker account; a paper account gets its one simulated sub-account at once."""
    account = BrokerAccount(
        owner=owner,
        name=(name or "").strip(),
        kind=kind,
        is_demo=is_demo,
        username=(username or "").strip(),
        password=password or "",
    )
    errors: dict[str, list] = {}
    _credential_errors(account, errors)
    _full_clean(account, errors)
    _raise(errors)
    with transaction.atomic():
        account.save()
        if account.is_paper:
            _paper_subaccount(account)
    logger.info("Broker account %s (%s) created for user %s", account.pk, account.kind, owner.pk)
    return account


@sensitive_variables("password", "username")
def broker_account_update(
    *,
    account: BrokerAccount,
    name: str | None = None,
    is_demo: bool | None = None,
    username: str | None = None,
    password: str | None = None,
) -> BrokerAccount:
    """Rename an account or change its login; an empty password keeps the stored one."""
    # A new login or environment makes the cached tokens and the synced sub-accounts belong to something else:
    # the tokens are dropped and the sub-accounts switched off until the next sync.
    touched = {
        "name",
        "username",
        "password",
        "is_demo",
        "access_token",
        "access_token_expires_at",
        "access_token_source",
        "oauth_token",
        "oauth_token_expires_at",
        "oauth_refresh_token",
        "broker_user_id",
        "status",
        "status_reason",
        "status_message",
        "status_changed_at",
    }
    with _restored_on_error(account, touched):
        _update_account(account, name=name, is_demo=is_demo, username=username, password=password)
    logger.info("Broker account %s updated", account.pk)
    return account


@sensitive_variables("password", "username")
def _update_account(
    account: BrokerAccount,
    *,
    name: str | None,
    is_demo: bool | None,
    username: str | None,
    password: str | None,
) -> None:
    if name is not None:
        account.name = name.strip()
    username = username.strip() if username is not None else None
    login_changed = username is not None and username != account.username
    environment_changed = is_demo is not None and is_demo != account.is_demo
    password_changed = bool(password)
    if username is not None:
        account.username = username
    if password_changed:
        account.password = password
    if is_demo is not None:
        account.is_demo = is_demo
    errors: dict[str, list] = {}
    _credential_errors(account, errors)
    _full_clean(account, errors)
    _raise(errors)
    if login_changed or password_changed or environment_changed:
        account.access_token = ""
        account.access_token_expires_at = None
        account.access_token_source = ""
        if account.status == BrokerAccount.Status.NEEDS_ATTENTION:
            account.status = BrokerAccount.Status.ACTIVE
            account.status_reason = ""
            account.status_message = ""
            account.status_changed_at = timezone.now()
    if login_changed or environment_changed:
        account.broker_user_id = None
    if environment_changed:
        # An OAuth token is only good in the environment that issued it.
        account.oauth_token = ""
        account.oauth_token_expires_at = None
        account.oauth_refresh_token = ""
    with transaction.atomic():
        account.save()
        if (login_changed or environment_changed) and not account.is_paper:
            account.subaccounts.update(active=False)


def broker_account_delete(*, account: BrokerAccount) -> None:
    """Delete a broker account with its sub-accounts and the traders that use it."""
    account_id = account.pk
    account.delete()
    logger.info("Broker account %s deleted", account_id)


def broker_account_sync_subaccounts(
    *, account: BrokerAccount, subaccounts: Iterable[SubAccount]
) -> list[BrokerSubAccount]:
    """Make the account's sub-accounts match what the broker lists; unlisted ones are switched off."""
    listed = list(subaccounts)
    now = timezone.now()
    with transaction.atomic():
        existing = {row.broker_id: row for row in account.subaccounts.select_for_update()}
        rows = []
        for item in listed:
            row = existing.pop(str(item.id), None)
            if row is None:
                row = BrokerSubAccount.objects.create(
                    account=account, broker_id=str(item.id), name=item.name, active=item.active
                )
            elif row.name != item.name or row.active != item.active:
                row.name, row.active = item.name, item.active
                row.save(update_fields=["name", "active", "synced_at"])
            rows.append(row)
        for row in existing.values():
            if row.active:
                row.active = False
                row.save(update_fields=["active", "synced_at"])
        BrokerAccount.objects.filter(pk=account.pk).update(subaccounts_synced_at=now)
        account.subaccounts_synced_at = now
    logger.info("Broker account %s lists %d sub-account(s)", account.pk, len(rows))
    return rows


def broker_account_mark_needs_attention(
    *, account: BrokerAccount, reason: str, message: str, retry_not_before: datetime | None = None
) -> None:
    """Mark an account unusable until its owner acts, with the reason code and what to do in words."""
    if retry_not_before is None and reason in SELF_HEALING_REASONS:
        # Tradovate's rules: no login from a server for an hour after a captcha demand, and nothing at all
        # during a lock-out, which each further request would extend.
        retry_not_before = timezone.now() + TRADOVATE_PAUSE
    changes = {
        "status": BrokerAccount.Status.NEEDS_ATTENTION,
        "status_reason": reason[:32],
        "status_message": message,
        "status_changed_at": timezone.now(),
        "retry_not_before": retry_not_before,
    }
    # An UPDATE of these columns only: a worker must not write back a stale copy of the credentials.
    BrokerAccount.objects.filter(pk=account.pk).update(**changes)
    for field, value in changes.items():
        setattr(account, field, value)
    logger.warning("Broker account %s needs attention: %s", account.pk, reason)


def broker_account_mark_active(*, account: BrokerAccount) -> None:
    """Clear a needs-attention state once the account works again."""
    changes = {
        "status": BrokerAccount.Status.ACTIVE,
        "status_reason": "",
        "status_message": "",
        "status_changed_at": timezone.now(),
        "retry_not_before": None,
    }
    BrokerAccount.objects.filter(pk=account.pk).update(**changes)
    for field, value in changes.items():
        setattr(account, field, value)


# --- broker connections -------------------------------------------------------------------------------------

# Reasons an account stops trading that JustTrades may retry by itself once retry_not_before has passed; every
# other reason needs the owner (new password, OAuth connect).
SELF_HEALING_REASONS = frozenset({CAPTCHA_REASON, LOCKED_OUT_REASON})
NOT_CONNECTED_REASON = "not_connected"


@dataclass(frozen=True)
class SubAccountCheck:
    """One account a broker login lists, with its money when the broker said."""

    id: str
    name: str
    active: bool  # the broker's word: an inactive account cannot trade
    chosen: bool  # traded by JustTrades
    balance: AccountBalance | None = None
    error: str = ""


@dataclass(frozen=True)
class ConnectionCheck:
    """The result of testing a broker connection: the accounts it lists, or why it failed, in words."""

    ok: bool
    message: str = ""
    subaccounts: tuple[SubAccountCheck, ...] = ()

    @property
    def chosen(self) -> tuple[SubAccountCheck, ...]:
        """The listed accounts JustTrades trades."""
        return tuple(item for item in self.subaccounts if item.chosen)


def _retry_wait_message(account: BrokerAccount) -> str:
    until = timezone.localtime(account.retry_not_before).strftime("%H:%M %Z")
    return (
        f"{account.status_message or 'This account needs attention.'} "
        f"No new login is tried before {until}; connecting through OAuth works at once."
    )


def _keep_choices(account: BrokerAccount, listed: Sequence[SubAccount]) -> list[BrokerSubAccount]:
    """Refresh names and listing of the sub-accounts, keeping which ones the owner chose to trade."""
    chosen = set(account.subaccounts.filter(active=True).values_list("broker_id", flat=True))
    if not account.subaccounts.exists():
        # A login with a single tradable account needs no choice; with several the owner picks.
        tradable = [item for item in listed if item.active]
        chosen = {tradable[0].id} if len(tradable) == 1 else set()
    return broker_account_sync_subaccounts(
        account=account,
        subaccounts=[SubAccount(item.id, item.name, item.active and item.id in chosen) for item in listed],
    )


def broker_account_check_connection(*, account: BrokerAccount) -> ConnectionCheck:
    """Log in (or use the stored token), list the login's accounts with their balances; clear needs-attention.

    A failure is reported in words and, when the owner must act, recorded on the account. Tradovate's
    one-hour wait after a captcha is respected: no login is tried before `retry_not_before`.
    """
    now = timezone.now()
    if account.needs_attention and account.retry_not_before and account.retry_not_before > now:
        return ConnectionCheck(False, _retry_wait_message(account))
    try:
        broker = broker_for_account(account, retrying=True)
        listed = broker.list_accounts()
    except BrokerNeedsAttention as error:
        if error.reason != NOT_CONNECTED_REASON:
            broker_account_mark_needs_attention(account=account, reason=error.reason, message=error.message)
        return ConnectionCheck(False, error.message)
    except BrokerError as error:
        return ConnectionCheck(False, error.message)
    if account.needs_attention:
        broker_account_mark_active(account=account)
        logger.info("Broker account %s works again after a connection test", account.pk)
    rows = {row.broker_id: row for row in _keep_choices(account, listed)}
    checks = []
    for item in listed:
        balance, problem = None, ""
        if item.active:
            try:
                balance = broker.account_balance(item.id)
            except BrokerError as error:
                problem = error.message
        row = rows.get(item.id)
        checks.append(
            SubAccountCheck(item.id, item.name, item.active, bool(row and row.active), balance, problem)
        )
    return ConnectionCheck(True, "", tuple(checks))


def broker_account_choose_subaccounts(
    *, account: BrokerAccount, chosen_ids: Iterable[str]
) -> list[BrokerSubAccount]:
    """Trade exactly the chosen accounts of the login (as the broker lists them now); return those rows.

    Raises ValidationError when a chosen id is not a tradable account of the login, BrokerError when the
    broker cannot be asked. Traders linked to an account switched off stop trading on it.
    """
    chosen = {str(item) for item in chosen_ids}
    if not chosen:
        raise ValidationError({"subaccounts": "Choose at least one account to trade."})
    listed = broker_for_account(account).list_accounts()
    by_id = {item.id: item for item in listed}
    errors: dict[str, list] = {}
    for broker_id in sorted(chosen):
        item = by_id.get(broker_id)
        if item is None:
            _add(
                errors,
                "subaccounts",
                f"{broker_id} is not an account of this login: test the connection again.",
            )
        elif not item.active:
            _add(errors, "subaccounts", f"{item.name} is not active at the broker and cannot trade.")
    _raise(errors)
    rows = broker_account_sync_subaccounts(
        account=account,
        subaccounts=[SubAccount(item.id, item.name, item.active and item.id in chosen) for item in listed],
    )
    logger.info("Broker account %s trades %d sub-account(s)", account.pk, len(chosen))
    return [row for row in rows if row.active]


@sensitive_variables("code", "token")
def broker_account_connect_oauth(
    *, owner, code: str, redirect_uri: str, account: BrokerAccount | None = None, name: str = ""
) -> BrokerAccount:
    """Exchange a Tradovate OAuth code (live first, then demo) and keep its token, encrypted, on the account.

    `account` None creates a Tradovate account named `name` (checked before the code is spent). The token's
    environment sets live or demo. Raises ValidationError for a bad name, BrokerError when Tradovate refuses
    or cannot be reached, with a sentence to show.
    """
    if account is None:
        candidate = BrokerAccount(owner=owner, name=(name or "").strip(), kind=BrokerAccount.Kind.TRADOVATE)
        errors: dict[str, list] = {}
        _full_clean(candidate, errors)
        _raise(errors)
    elif account.kind != BrokerAccount.Kind.TRADOVATE or account.owner_id != owner.pk:
        raise ValidationError({"account": "Choose one of your Tradovate accounts."})
    environment, token = exchange_oauth_code(
        django_settings.TRADOVATE_LIVE_URL,
        django_settings.TRADOVATE_DEMO_URL,
        code,
        redirect_uri,
        django_settings.TRADOVATE_CLIENT_ID,
        django_settings.TRADOVATE_CLIENT_SECRET,
        timeout=tradovate_timeout(),
    )
    is_demo = environment == "demo"
    with transaction.atomic():
        if account is None:
            account = broker_account_create(
                owner=owner, name=name, kind=BrokerAccount.Kind.TRADOVATE, is_demo=is_demo
            )
        elif account.is_demo != is_demo:
            broker_account_update(account=account, is_demo=is_demo)
        # The connect replaces whatever session was cached: the next call uses the new OAuth token.
        changes = {
            "oauth_token": token.access_token,
            "oauth_token_expires_at": token.expires_at,
            "oauth_refresh_token": "",
            "access_token": "",
            "access_token_expires_at": None,
            "access_token_source": "",
            "broker_user_id": None,
            "status": BrokerAccount.Status.ACTIVE,
            "status_reason": "",
            "status_message": "",
            "status_changed_at": timezone.now(),
            "retry_not_before": None,
        }
        BrokerAccount.objects.filter(pk=account.pk).update(**changes)
        for field, value in changes.items():
            setattr(account, field, value)
    logger.info("Broker account %s connected through OAuth (%s)", account.pk, environment)
    return account


# --- recorders ----------------------------------------------------------------------------------------------


def _recorder_errors(recorder: Recorder, targets: Sequence[TakeProfitTarget]) -> dict[str, list]:
    errors: dict[str, list] = {}
    recorder.name = (recorder.name or "").strip()
    recorder.symbol = (recorder.symbol or "").strip().upper()
    if recorder.symbol:
        try:
            contract_for_symbol(recorder.symbol)
        except SymbolError as error:
            _add(errors, "symbol", str(error))
    _timezone_errors(recorder.timezone, errors)
    values = {name: getattr(recorder, name) for name in SETTING_FIELDS}
    _time_filter_errors(values, errors)
    if not errors:
        plan = {name: values[name] for name in PLAN_SETTING_FIELDS}
        _settings_errors(
            {name: values[name] for name in RISK_SETTING_FIELDS},
            {**plan, "tp_targets": _target_items(targets)},
            errors,
        )
    _full_clean(recorder, errors)
    return errors


def _save_unique(instance, errors_if_duplicate: dict[str, str], save) -> None:
    """Run `save`; a unique constraint lost to a concurrent request becomes a ValidationError."""
    try:
        with transaction.atomic():
            save()
    except IntegrityError:
        try:
            instance.validate_constraints()
        except ValidationError:
            raise ValidationError(errors_if_duplicate) from None
        raise


def recorder_create(*, owner, tp_targets: Iterable[Any] | None = (), **settings: Any) -> Recorder:
    """Create a recorder with a fresh webhook token; settings use the recorder API's names."""
    _check_names(settings, RECORDER_FIELDS)
    targets = _clean_targets(tp_targets)
    token = new_webhook_token()
    recorder = Recorder(
        owner=owner, webhook_token=token, webhook_token_hash=webhook_token_digest(token), **settings
    )
    _raise(_recorder_errors(recorder, targets))

    def save() -> None:
        recorder.save()
        RecorderTarget.objects.bulk_create(_target_rows(RecorderTarget, {"recorder": recorder}, targets))
        RecorderPosition.objects.create(recorder=recorder)

    _save_unique(recorder, {"name": "You already have a recorder with this name."}, save)
    logger.info("Recorder %s created for user %s", recorder.pk, owner.pk)
    return recorder


def recorder_update(
    *, recorder: Recorder, tp_targets: Iterable[Any] | None = None, **settings: Any
) -> Recorder:
    """Change a recorder's settings; `tp_targets` None keeps its targets, a list replaces them."""
    _check_names(settings, RECORDER_FIELDS)
    with _restored_on_error(recorder, {"name", "symbol", *settings}):
        _update_recorder(recorder, tp_targets, settings)
    logger.info("Recorder %s updated", recorder.pk)
    return recorder


def _update_recorder(recorder: Recorder, tp_targets: Iterable[Any] | None, settings: dict[str, Any]) -> None:
    old_symbol = recorder.symbol
    for name, value in settings.items():
        setattr(recorder, name, value)
    targets = _clean_targets(tp_targets) if tp_targets is not None else None
    current_targets = targets
    if current_targets is None:
        current_targets = [TakeProfitTarget(t.value, t.trim) for t in recorder.targets.all()]
    errors = _recorder_errors(recorder, current_targets)
    if "symbol" not in errors and _root(recorder.symbol) != _root(old_symbol):
        book = RecorderPosition.objects.filter(recorder=recorder).exclude(quantity=0).first()
        if book is not None:
            _add(
                errors,
                "symbol",
                f"This recorder holds a virtual position of {book.quantity:+d} {_root(old_symbol)}: "
                "reset its performance (or let a close signal flatten it) before changing the contract.",
            )
    _raise(errors)

    def save() -> None:
        recorder.save()
        if targets is not None:
            recorder.targets.all().delete()
            RecorderTarget.objects.bulk_create(_target_rows(RecorderTarget, {"recorder": recorder}, targets))

    _save_unique(recorder, {"name": "You already have a recorder with this name."}, save)
    if targets is not None and hasattr(recorder, "_prefetched_objects_cache"):
        recorder._prefetched_objects_cache.pop("targets", None)


def _root(symbol: str) -> str:
    try:
        return symbol_root(symbol)
    except SymbolError:
        return symbol


def recorder_delete(*, recorder: Recorder) -> None:
    """Delete a recorder, its performance and the traders that follow it."""
    recorder_id = recorder.pk
    recorder.delete()
    logger.info("Recorder %s deleted", recorder_id)


def recorder_regenerate_webhook_token(*, recorder: Recorder) -> str:
    """Give the recorder a new webhook token; the old URL stops working at once. Returns the new token."""
    token = new_webhook_token()
    recorder.webhook_token = token
    recorder.webhook_token_hash = webhook_token_digest(token)
    recorder.save(update_fields=["webhook_token", "webhook_token_hash", "updated_at"])
    logger.info("Recorder %s has a new webhook token", recorder.pk)
    return token


def _locked_position(recorder: Recorder) -> RecorderPosition:
    """Return the recorder's position row locked for this transaction (created when missing)."""
    RecorderPosition.objects.get_or_create(recorder=recorder)
    # The lock serialises every writer of this recorder's book and counters until the transaction ends.
    return RecorderPosition.objects.select_for_update().get(recorder=recorder)


def _apply_fill(
    row: RecorderPosition,
    *,
    signed_quantity: int,
    price: Decimal,
    at: datetime,
    contract: ContractInfo,
    source_key: str,
) -> RecorderTrade:
    book = RecorderBook(row.quantity, row.avg_price, row.realized_pnl)
    new_book, realized = book.fill(signed_quantity, price, contract)
    row.quantity, row.avg_price, row.realized_pnl = (
        new_book.position,
        new_book.avg_price,
        new_book.realized_pnl,
    )
    row.save(update_fields=["quantity", "avg_price", "realized_pnl", "updated_at"])
    return RecorderTrade.objects.create(
        recorder_id=row.recorder_id,
        executed_at=at,
        session=trading_day(at),
        action=RecorderTrade.Action.BUY if signed_quantity > 0 else RecorderTrade.Action.SELL,
        quantity=abs(signed_quantity),
        price=price,
        position_after=new_book.position,
        avg_price_after=new_book.avg_price,
        realized_pnl=realized,
        cumulative_pnl=new_book.realized_pnl,
        source_key=source_key,
    )


def _fill_price(price: Decimal | int | str) -> Decimal:
    value = to_decimal(price, name="price")
    if value <= 0:
        raise ValueError(f"A fill price must be more than 0, not {value}.")
    return value


def recorder_record_fill(
    *,
    recorder: Recorder,
    action: str,
    quantity: int,
    price: Decimal | int | str,
    at: datetime,
    source_key: str = "",
) -> RecorderTrade | None:
    """Apply a virtual fill (buy, sell or close) to the recorder's book and store the trade with its P&L."""
    # Returns None when nothing changed: recording is off, or a close found the book flat. The same non-empty
    # `source_key` (e.g. "signal:42") is recorded once; a repeat returns the first trade.
    action = Action.parse(action)
    price = _fill_price(price)
    if action is not Action.CLOSE and (
        isinstance(quantity, bool) or not isinstance(quantity, int) or quantity < 1
    ):
        raise ValueError(f"A fill quantity must be a whole number of at least 1, not {quantity!r}.")
    trading_day(at)  # rejects a naive datetime before anything is written
    if not recorder.recording_enabled:
        return None
    contract = contract_for_symbol(recorder.symbol)
    with transaction.atomic():
        row = _locked_position(recorder)
        if source_key:
            earlier = RecorderTrade.objects.filter(recorder=recorder, source_key=source_key).first()
            if earlier is not None:
                return earlier
        signed = {Action.BUY: quantity, Action.SELL: -quantity, Action.CLOSE: -row.quantity}[action]
        if signed == 0:
            return None
        return _apply_fill(
            row, signed_quantity=signed, price=price, at=at, contract=contract, source_key=source_key
        )


def _store_state(row: RecorderPosition, state: RiskState) -> None:
    row.signal_position = state.position
    row.last_signal_at = state.last_signal_at
    row.signals_this_session = state.signals_this_session
    row.signal_count = state.signal_count
    row.session = state.session
    row.save(
        update_fields=[
            "signal_position",
            "last_signal_at",
            "signals_this_session",
            "signal_count",
            "session",
            "updated_at",
        ]
    )


def recorder_state_save(*, recorder: Recorder, state: RiskState) -> None:
    """Store what the recorder's filters must remember after a signal (a Decision's `state`)."""
    with transaction.atomic():
        _store_state(_locked_position(recorder), state)


def recorder_signal_evaluate(*, recorder: Recorder, signal: Signal, source_key: str = "") -> Decision:
    """Run the recorder's own filters on a signal; store their counters and, when recording, its fill."""
    # The whole step holds the recorder's row lock. The book moves to the decision's position at the signal's
    # price (a signal without a price is judged but moves no book). The caller claims the signal first:
    # running this twice for one signal counts it twice.
    settings = recorder_risk_settings(recorder)
    contract = contract_for_symbol(recorder.symbol) if recorder.recording_enabled else None
    with transaction.atomic():
        row = _locked_position(recorder)
        decision = evaluate(signal, settings, position_risk_state(row, at=signal.received_at))
        _store_state(row, decision.state)
        if decision.allowed and contract is not None and signal.price is not None and signal.price > 0:
            # Toward the decision's position, not by its delta: a book that missed a signal catches up.
            signed = decision.position_after - row.quantity
            if signed:
                _apply_fill(
                    row,
                    signed_quantity=signed,
                    price=signal.price,
                    at=signal.received_at,
                    contract=contract,
                    source_key=source_key,
                )
    return decision


def recorder_reset_performance(*, recorder: Recorder) -> None:
    """Forget the recorder's virtual trades and flatten its book (its filter counters are kept)."""
    with transaction.atomic():
        row = _locked_position(recorder)
        RecorderTrade.objects.filter(recorder=recorder).delete()
        row.quantity, row.avg_price, row.realized_pnl = 0, None, Decimal("0.00")
        row.save(update_fields=["quantity", "avg_price", "realized_pnl", "updated_at"])
    logger.info("Recorder %s performance reset", recorder.pk)


# --- traders ------------------------------------------------------------------------------------------------


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
            _add(
                errors,
                "subaccounts",
                f"{account.name} has no sub-accounts yet: test the connection on the accounts page "
                "to load them "
                "from the broker.",
            )
        else:
            _add(
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
            _add(errors, "subaccounts", f"{broker_id} is not an active sub-account of {account.name}.")
            continue
        if broker_id in seen:
            _add(errors, "subaccounts", f"Sub-account {row.name} is listed twice.")
            continue
        if isinstance(multiplier, bool) or not isinstance(multiplier, int) or multiplier < 1:
            _add(errors, "subaccounts", f"The multiplier of {row.name} must be a whole number of at least 1.")
            continue
        seen.add(broker_id)
        resolved.append((row, multiplier))
    if not resolved and not errors.get("subaccounts"):
        _add(errors, "subaccounts", "Choose at least one sub-account to trade.")
    return resolved


def _trader_errors(
    trader: Trader, owner, targets: Sequence[TakeProfitTarget] | None, errors: dict[str, list]
) -> None:
    recorder, account = trader.recorder, trader.account
    if account.owner_id != owner.pk:
        _add(errors, "account", "Choose one of your broker accounts.")
    if recorder.owner_id != owner.pk and recorder.is_private:
        _add(errors, "recorder", "Choose one of your recorders or a public one.")
    _timezone_errors(trader.timezone, errors)
    overrides = {name: getattr(trader, name) for name in SETTING_FIELDS}
    effective = {
        name: getattr(recorder, name) if value is None or value == "" else value
        for name, value in overrides.items()
    }
    _time_filter_errors(effective, errors, label=" (here or on the recorder)")
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
                    "tp_targets": _target_items(targets) if targets is not None else None,
                },
            )
        except (ValueError, TypeError) as error:
            _add(errors, NON_FIELD_ERRORS, str(error))
    # Field checks without the foreign-key lookups (both objects are in hand), then every constraint.
    for check in (
        lambda: trader.full_clean(exclude=["recorder", "account"], validate_constraints=False),
        trader.validate_constraints,
    ):
        try:
            check()
        except ValidationError as error:
            _merge_validation(errors, error)


def _save_trader(
    trader: Trader,
    *,
    targets: Sequence[TakeProfitTarget] | _Unset | None,
    links: list[tuple[BrokerSubAccount, int]] | None,
) -> None:
    def save() -> None:
        trader.save()
        if targets is not UNSET:
            trader.targets.all().delete()
            TraderTarget.objects.bulk_create(_target_rows(TraderTarget, {"trader": trader}, targets or []))
        if links is not None:
            trader.subaccount_links.all().delete()
            TraderSubAccount.objects.bulk_create(
                TraderSubAccount(trader=trader, subaccount=row, multiplier=multiplier)
                for row, multiplier in links
            )

    _save_unique(trader, {"account": "This broker account already follows this recorder."}, save)
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
    _check_names(fields, TRADER_FIELDS)
    trader = Trader(recorder=recorder, account=account, **fields)
    trader.tp_targets_overridden = tp_targets is not None
    targets = _clean_targets(tp_targets) if tp_targets is not None else None
    errors: dict[str, list] = {}
    links = _resolve_subaccounts(account, subaccounts, errors) if account.owner_id == owner.pk else []
    _trader_errors(trader, owner, targets, errors)
    _raise(errors)
    _save_trader(trader, targets=targets if targets is not None else [], links=links)
    logger.info("Trader %s created: recorder %s on account %s", trader.pk, recorder.pk, account.pk)
    return trader


def trader_update(
    *,
    trader: Trader,
    recorder: Recorder | None = None,
    account: BrokerAccount | None = None,
    subaccounts: Sequence[SubAccountChoice] | _Unset | None = UNSET,
    tp_targets: Iterable[Any] | _Unset | None = UNSET,
    **fields: Any,
) -> Trader:
    """Change a trader; arguments left out stay as they are (`tp_targets=None` returns to the recorder's)."""
    _check_names(fields, TRADER_FIELDS)
    with _restored_on_error(trader, {"recorder", "account", "tp_targets_overridden", *fields}):
        _update_trader(trader, recorder, account, subaccounts, tp_targets, fields)
    logger.info("Trader %s updated", trader.pk)
    return trader


def _update_trader(
    trader: Trader,
    recorder: Recorder | None,
    account: BrokerAccount | None,
    subaccounts: Sequence[SubAccountChoice] | _Unset | None,
    tp_targets: Iterable[Any] | _Unset | None,
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
    targets: Sequence[TakeProfitTarget] | _Unset | None = UNSET
    if tp_targets is not UNSET:
        targets = _clean_targets(tp_targets) if tp_targets is not None else None
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
    _raise(errors)
    _save_trader(trader, targets=UNSET if targets is UNSET else (targets or []), links=links)


def trader_delete(*, trader: Trader) -> None:
    """Delete a trader; its recorder and broker account stay."""
    trader_id = trader.pk
    trader.delete()
    logger.info("Trader %s deleted", trader_id)
