"""Writes about users and access keys: issuing and redeeming keys, registration, approval, profile changes."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone
from rest_framework.authtoken.models import Token

from accounts import keys, selectors
from accounts.models import AccessKey, ApprovalLog, User
from accounts.selectors import AccessKeyRefusal, AccessKeyRefused
from pineaccess.models import PineScript, ScriptAccess
from pineaccess.services.access import script_access_grant

logger = logging.getLogger("accounts")

MAX_KEYS_PER_BATCH = 1000
MAX_ACCESS_DAYS = 36_500


class RegistrationClosed(Exception):
    """Registration without an access key while REGISTRATION_OPEN is off."""

    message = "Registration needs an access key. Enter the key you were given to start."


class RegistrationConflict(Exception):
    """Someone else took the username or TradingView username while this registration was being made."""

    message = (
        "That username or TradingView username was taken a moment ago by another registration. "
        "Choose another and submit again."
    )


@dataclass(frozen=True)
class Redemption:
    """What redeeming a key did: the access it requested and whether it approved the account."""

    access_key: AccessKey
    accesses: list[ScriptAccess]
    approved: bool


@dataclass(frozen=True)
class IssuedAccessKey:
    """A key just created, with its raw form: the only moment the raw key exists."""

    access_key: AccessKey
    raw_key: str


# ------------------------------------------------------------------------------------------------ keys


def access_keys_create(
    *,
    count: int,
    scripts: Sequence[PineScript] = (),
    access_days: int | None = None,
    note: str = "",
    auto_approve: bool = True,
    valid_until: datetime | None = None,
    created_by: User | None = None,
) -> list[IssuedAccessKey]:
    """Create `count` keys granting `scripts` (none: the default scripts); return their raw forms once."""
    errors = {}
    if not 1 <= count <= MAX_KEYS_PER_BATCH:
        errors["count"] = f"Create between 1 and {MAX_KEYS_PER_BATCH} keys at a time."
    if access_days is not None and not 1 <= access_days <= MAX_ACCESS_DAYS:
        errors["access_days"] = (
            f"Access lasts between 1 and {MAX_ACCESS_DAYS} days; leave it empty for lifetime access."
        )
    inactive = sorted(script.pine_id for script in scripts if not script.active)
    if inactive:
        errors["scripts"] = (
            f"These scripts are switched off and cannot be granted: {', '.join(inactive)}. "
            "Switch them on first or leave them out."
        )
    if valid_until is not None and valid_until <= timezone.now():
        errors["valid_until"] = "The valid-until time is already past; choose a later one or leave it empty."
    if errors:
        raise ValidationError(errors)

    raw_keys = [keys.generate() for _ in range(count)]
    with transaction.atomic():
        created = AccessKey.objects.bulk_create(
            [
                AccessKey(
                    key_hash=keys.digest(keys.normalize(raw_key)),
                    note=note.strip(),
                    valid_until=valid_until,
                    access_days=access_days,
                    auto_approve=auto_approve,
                    created_by=created_by,
                )
                for raw_key in raw_keys
            ]
        )
        through = AccessKey.scripts.through
        through.objects.bulk_create(
            [
                through(accesskey_id=access_key.pk, pinescript_id=script.pk)
                for access_key in created
                for script in scripts
            ]
        )
    logger.info("Created %d access keys (first id %s)", len(created), created[0].pk)
    return [IssuedAccessKey(access_key=key, raw_key=raw) for key, raw in zip(created, raw_keys, strict=True)]


def access_keys_revoke(*, access_keys: Iterable[AccessKey], revoked_by: User | None) -> int:
    """Revoke the keys nobody has redeemed yet; return how many were revoked."""
    ids = [access_key.pk for access_key in access_keys]
    # Conditional: a key redeemed a moment ago stays redeemed, a revoked one keeps its first revocation.
    return AccessKey.objects.filter(pk__in=ids, redeemed_at__isnull=True, revoked_at__isnull=True).update(
        revoked_at=timezone.now(), revoked_by=revoked_by
    )


def access_key_redeem(*, access_key_id: int, user: User) -> Redemption:
    """Redeem a key for a user: claim it, grant its scripts, approve the user if the key says so.

    Raises AccessKeyRefused when the key is no longer redeemable; anything raised leaves the key unused.
    """
    with transaction.atomic():
        now = timezone.now()
        # The claim is one conditional UPDATE: of any number of concurrent requests exactly one matches
        # the row (PostgreSQL re-checks the WHERE after the winner commits; SQLite serialises writers).
        claimed = (
            AccessKey.objects.filter(pk=access_key_id, redeemed_at__isnull=True, revoked_at__isnull=True)
            .filter(Q(valid_until__isnull=True) | Q(valid_until__gt=now))
            .update(redeemed_by=user, redeemed_at=now)
        )
        if claimed != 1:
            access_key = AccessKey.objects.filter(pk=access_key_id).first()
            raise AccessKeyRefused(
                selectors.access_key_refusal(access_key=access_key) or AccessKeyRefusal.USED
            )
        access_key = AccessKey.objects.prefetch_related("scripts").get(pk=access_key_id)
        approved = False
        accesses = []
        if access_key.auto_approve and user.approval_status == User.ApprovalStatus.PENDING:
            # Approval grants the key's scripts (see user_approve).
            approved = user_approve(user=user, approved_by=None, access_key=access_key)
            accesses = list(user.script_accesses.filter(status=ScriptAccess.Status.PENDING))
        elif user.approval_status == User.ApprovalStatus.APPROVED:
            accesses = _access_key_grant(access_key=access_key, user=user, requested_by=user)
        # Otherwise the account waits for staff: its scripts are granted when it is approved, not before.
    logger.info("User %s redeemed access key #%s (%d grants queued)", user.pk, access_key.pk, len(accesses))
    return Redemption(access_key=access_key, accesses=accesses, approved=approved)


def _access_key_grant(*, access_key: AccessKey, user: User, requested_by: User | None) -> list[ScriptAccess]:
    """Grant a redeemed key's scripts to its user."""
    scripts = selectors.access_key_scripts_to_grant(access_key=access_key)
    if not scripts:
        return []
    return script_access_grant(
        user=user, scripts=scripts, duration_days=access_key.access_days, requested_by=requested_by
    )


# ------------------------------------------------------------------------------------------ registration


def user_register(
    *,
    username: str,
    email: str,
    password: str,
    tradingview_username: str,
    tradingview_verified: bool,
    access_key_id: int | None = None,
) -> User:
    """Create an account, redeeming its access key in the same transaction; pending unless the key approves.

    Without a key it needs REGISTRATION_OPEN. Raises RegistrationClosed, RegistrationConflict or
    AccessKeyRefused; on any of them nothing is created and the key stays unused.
    """
    if access_key_id is None and not getattr(settings, "REGISTRATION_OPEN", False):
        raise RegistrationClosed
    try:
        with transaction.atomic():
            user = User(
                username=username,
                email=User.objects.normalize_email(email),
                tradingview_username=tradingview_username.strip(),
                tradingview_verified=tradingview_verified,
                approval_status=User.ApprovalStatus.PENDING,
            )
            user.set_password(password)
            user.save()
            if access_key_id is not None:
                access_key_redeem(access_key_id=access_key_id, user=user)
    except IntegrityError as error:
        # The forms check both names first; this is the narrow window where another registration won.
        raise RegistrationConflict from error
    logger.info("Registered user %s (%s)", user.pk, user.approval_status)
    return user


# -------------------------------------------------------------------------------------------- approval


def user_approve(*, user: User, approved_by: User | None, access_key: AccessKey | None = None) -> bool:
    """Approve a pending or rejected user (reactivating a rejected one); False when already approved."""
    with transaction.atomic():
        changed = (
            User.objects.filter(pk=user.pk)
            .exclude(approval_status=User.ApprovalStatus.APPROVED)
            .update(approval_status=User.ApprovalStatus.APPROVED, is_active=True)
        )
        if changed:
            ApprovalLog.objects.create(
                user=user,
                decision=ApprovalLog.Decision.APPROVED,
                decided_by=approved_by,
                access_key=access_key,
            )
            user.approval_status, user.is_active = User.ApprovalStatus.APPROVED, True
            # A user is approved at most once (only pending users can be rejected), so the keys they
            # redeemed while waiting are granted here exactly once.
            for redeemed in AccessKey.objects.filter(redeemed_by=user).prefetch_related("scripts"):
                _access_key_grant(access_key=redeemed, user=user, requested_by=approved_by or user)
    if changed:
        logger.info("Approved user %s", user.pk)
    return bool(changed)


def user_reject(*, user: User, rejected_by: User | None, reason: str) -> bool:
    """Reject a pending user: deactivate the account and record why; False when it was not pending."""
    reason = reason.strip()
    if not reason:
        raise ValidationError({"reason": "Say why the account is rejected; the reason is kept in the log."})
    with transaction.atomic():
        changed = User.objects.filter(pk=user.pk, approval_status=User.ApprovalStatus.PENDING).update(
            approval_status=User.ApprovalStatus.REJECTED, is_active=False
        )
        if changed:
            ApprovalLog.objects.create(
                user=user, decision=ApprovalLog.Decision.REJECTED, decided_by=rejected_by, reason=reason
            )
    if changed:
        user.approval_status, user.is_active = User.ApprovalStatus.REJECTED, False
        logger.info("Rejected user %s", user.pk)
    return bool(changed)


def users_approve(*, users: Iterable[User], approved_by: User) -> int:
    """Approve each user that is not approved yet; return how many were."""
    return sum(user_approve(user=user, approved_by=approved_by) for user in users)


def users_reject(*, users: Iterable[User], rejected_by: User, reason: str) -> int:
    """Reject each pending user with the same reason; return how many were."""
    return sum(user_reject(user=user, rejected_by=rejected_by, reason=reason) for user in users)


# --------------------------------------------------------------------------------------------- profile


def user_profile_update(*, user: User, email: str, first_name: str, last_name: str, time_zone: str) -> User:
    """Save the details a user edits on their profile."""
    user.email = User.objects.normalize_email(email)
    user.first_name = first_name.strip()
    user.last_name = last_name.strip()
    user.time_zone = time_zone
    user.save(update_fields=["email", "first_name", "last_name", "time_zone"])
    return user


def api_token_rotate(*, user: User) -> Token:
    """Replace the user's API token with a new one (the old one stops working at once)."""
    with transaction.atomic():
        Token.objects.filter(user=user).delete()
        return Token.objects.create(user=user)


def api_token_get_or_create(*, user: User) -> Token:
    """The user's API token, created on first use."""
    token, _ = Token.objects.get_or_create(user=user)
    return token
