"""TradingView usernames: check one exists, change a user's, re-check those saved unverified, and let a
registration in progress ask."""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction

from pineaccess import selectors
from pineaccess.models import AccessLog
from pineaccess.services.audit import access_log_write, actor_of
from pineaccess.services.client import tradingview_client
from pineaccess.tradingview import TradingViewClient, TradingViewError

logger = logging.getLogger(__name__)

Operation = AccessLog.Operation
Outcome = AccessLog.Outcome

TRADINGVIEW_USERNAME_MAX_LENGTH = 64
_USERNAME_RE = re.compile(r"^[^\s/\\?#&%;,'\"<>]+$")
# The registration page sets this in the session once a valid access key was entered, so people who are
# registering (not yet logged in) may check their TradingView username as they type.
USERNAME_CHECK_SESSION_KEY = "pineaccess_may_check_tradingview_username"


@dataclass(frozen=True)
class UsernameCheck:
    """What TradingView says about a username: valid None means TradingView could not be asked."""

    valid: bool | None
    username: str
    error: str = ""


def tradingview_username_check(
    *, username: str, requested_by=None, actor: str | None = None, client: TradingViewClient | None = None
) -> UsernameCheck:
    """Ask TradingView whether the user exists (exact, case-insensitive) and return its spelling; `actor`
    overrides the audit actor (a person registering has no account yet but is a user, not the system)."""
    text = (username or "").strip()
    if not text:
        return UsernameCheck(False, "", "Enter your TradingView username.")
    if len(text) > TRADINGVIEW_USERNAME_MAX_LENGTH or not _USERNAME_RE.match(text):
        return UsernameCheck(
            False,
            text,
            "A TradingView username has no spaces or punctuation like / ? & ; and at most "
            f"{TRADINGVIEW_USERNAME_MAX_LENGTH} characters.",
        )
    actor = actor or actor_of(requested_by)
    own_client = client is None
    client = client or tradingview_client()
    try:
        found = client.username_hint(text)
    except TradingViewError as error:
        access_log_write(
            operation=Operation.VALIDATE_USERNAME,
            outcome=Outcome.FAILURE,
            detail=f"could not check: {error.summary}",
            actor=actor,
            actor_user=requested_by,
            tradingview_username=text,
        )
        return UsernameCheck(
            None,
            text,
            "TradingView could not be reached to check this username. You can go on: it will be "
            "checked again automatically.",
        )
    finally:
        if own_client:
            client.close()
    if found is None:
        access_log_write(
            operation=Operation.VALIDATE_USERNAME,
            outcome=Outcome.FAILURE,
            detail="no such TradingView user",
            actor=actor,
            actor_user=requested_by,
            tradingview_username=text,
        )
        return UsernameCheck(
            False,
            text,
            f'There is no TradingView user named "{text}". Check the spelling: it is the name shown on '
            "your TradingView profile page.",
        )
    access_log_write(
        operation=Operation.VALIDATE_USERNAME,
        outcome=Outcome.SUCCESS,
        detail=f"TradingView spells it {found}",
        actor=actor,
        actor_user=requested_by,
        tradingview_username=found,
    )
    return UsernameCheck(True, found)


def tradingview_username_change(*, user, username: str, requested_by=None) -> UsernameCheck:
    """Change the user's TradingView username after TradingView confirms it; refused while any access is
    pending, active, failed or being removed. Unreachable TradingView saves it unverified."""
    requested_by = requested_by or user
    if not selectors.tradingview_username_can_change(user=user):
        raise ValidationError(
            "Your TradingView username cannot change while you have script access (pending, active, failed "
            "or being removed). It can change once all access has been removed; ask support if you need that."
        )
    check = tradingview_username_check(username=username, requested_by=requested_by)
    if check.valid is False:
        raise ValidationError(check.error)
    user_model = get_user_model()
    with transaction.atomic():
        locked = user_model.objects.select_for_update().get(pk=user.pk)
        # Checked again under the lock: a grant may have been made since the first look.
        if not selectors.tradingview_username_can_change(user=locked):
            raise ValidationError("Script access was granted meanwhile, so the username cannot change now.")
        taken = (
            user_model.objects.filter(tradingview_username__iexact=check.username)
            .exclude(pk=user.pk)
            .exists()
        )
        if taken:
            raise ValidationError("This TradingView username is already linked to another account.")
        previous = locked.tradingview_username or ""
        locked.tradingview_username = check.username
        locked.tradingview_verified = bool(check.valid)
        try:
            with transaction.atomic():
                locked.save(update_fields=["tradingview_username", "tradingview_verified"])
        except IntegrityError as error:
            raise ValidationError(
                "This TradingView username is already linked to another account."
            ) from error
        access_log_write(
            operation=Operation.CHANGE_USERNAME,
            outcome=Outcome.SUCCESS,
            detail=f"changed from {previous or '(none)'} to {check.username}"
            + ("" if check.valid else " (not verified: TradingView unreachable)"),
            actor=actor_of(requested_by),
            actor_user=requested_by,
            target_user=locked,
            tradingview_username=check.username,
        )
    user.tradingview_username = locked.tradingview_username
    user.tradingview_verified = locked.tradingview_verified
    return check


@dataclass
class RecheckResult:
    """What re-checking unverified usernames found."""

    verified: int = 0
    not_found: int = 0
    unreachable: bool = False


def tradingview_usernames_recheck(*, limit: int = 200) -> RecheckResult:
    """Ask TradingView again about usernames saved unverified (it could not be reached at the time)."""
    user_model = get_user_model()
    users = list(
        user_model.objects.filter(tradingview_verified=False, is_active=True)
        .exclude(tradingview_username__isnull=True)
        .exclude(tradingview_username="")
        .order_by("pk")[:limit]
    )
    result = RecheckResult()
    if not users:
        return result
    with tradingview_client() as client:
        for user in users:
            check = tradingview_username_check(username=user.tradingview_username, client=client)
            if check.valid is None:
                result.unreachable = True
                break
            if check.valid:
                try:
                    with transaction.atomic():
                        user_model.objects.filter(
                            pk=user.pk, tradingview_username=user.tradingview_username
                        ).update(tradingview_verified=True, tradingview_username=check.username)
                except IntegrityError:
                    logger.warning("TradingView spells %s differently and the spelling is taken", user.pk)
                    continue
                result.verified += 1
            else:
                result.not_found += 1
    return result


def username_check_allow(session) -> None:
    """Let an anonymous session use the username check (called when a registration starts)."""
    session[USERNAME_CHECK_SESSION_KEY] = True
