"""Broker accounts: create, update, delete, sub-accounts, connection checks, OAuth, needs attention."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.conf import settings as django_settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from django.views.decorators.debug import sensitive_variables

from trading.brokers.base import AccountBalance, BrokerError, BrokerNeedsAttention, SubAccount
from trading.brokers.registry import broker_for_account, tradovate_timeout
from trading.brokers.tradovate import LOCKED_OUT_REASON, exchange_oauth_code
from trading.models import (
    BrokerAccount,
    BrokerSubAccount,
)
from trading.services.validation import error_add, errors_raise, full_clean_errors, restored_on_error

logger = logging.getLogger(__name__)


CAPTCHA_REASON = "captcha"
TRADOVATE_PAUSE = timedelta(hours=1)


def _paper_subaccount(account: BrokerAccount) -> BrokerSubAccount:
    return BrokerSubAccount.objects.create(account=account, broker_id=f"paper-{account.pk}", name="Paper")


def _credential_errors(account: BrokerAccount, errors: dict[str, list]) -> None:
    if account.kind == BrokerAccount.Kind.PAPER:
        if account.username or account.password:
            error_add(
                errors, "username", "A paper account has no login: leave the username and password empty."
            )
        if not account.is_demo:
            error_add(errors, "is_demo", "A paper account is simulated: it cannot be live.")
    elif bool(account.username) != bool(account.password):
        missing = "password" if account.username else "username"
        error_add(
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
    full_clean_errors(account, errors)
    errors_raise(errors)
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
    with restored_on_error(account, touched):
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
    full_clean_errors(account, errors)
    errors_raise(errors)
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
            error_add(
                errors,
                "subaccounts",
                f"{broker_id} is not an account of this login: test the connection again.",
            )
        elif not item.active:
            error_add(errors, "subaccounts", f"{item.name} is not active at the broker and cannot trade.")
    errors_raise(errors)
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
        full_clean_errors(candidate, errors)
        errors_raise(errors)
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
