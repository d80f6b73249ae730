"""Writes for Pine Script access: requests in the caller's transaction, TradingView work in tasks after it.

Every access row moves pending → active (or failed with the reason) and active → removing → removed. A worker
claims a row with a conditional UPDATE (a short lease) before it talks to TradingView, so two workers never
act on one row and a second run of the same task finds nothing to do.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Case, F, Q, Value, When
from django.utils import timezone

from pineaccess import selectors
from pineaccess.models import AccessLog, Actor, PineScript, ScriptAccess, SyncReport, TradingViewSession
from pineaccess.session_store import DatabaseSessionStore
from pineaccess.tradingview import (
    CaptchaRequired,
    InvalidCredentials,
    RateLimited,
    ScriptNotAccessible,
    ScriptUser,
    SessionExpired,
    TradingViewClient,
    TradingViewError,
    TradingViewSessionStore,
    TradingViewUnavailable,
    TwoFactorRequired,
    client_from_settings,
    is_pine_id,
)

logger = logging.getLogger(__name__)

Status = ScriptAccess.Status
Operation = AccessLog.Operation
Outcome = AccessLog.Outcome

# Longer than CELERY_TASK_TIME_LIMIT, so a lease only runs out when its worker is gone.
CLAIM_LEASE = timedelta(minutes=6)
# Errors worth retrying later with backoff; every other TradingViewError is final for this attempt.
TRANSIENT_ERRORS: tuple[type[TradingViewError], ...] = (TradingViewUnavailable, RateLimited)
SIGN_IN_ERRORS: tuple[type[TradingViewError], ...] = (
    CaptchaRequired,
    TwoFactorRequired,
    InvalidCredentials,
    SessionExpired,
)
# Failures an operator fixes (a fresh session, TradingView back up); their grants are retried after the fix.
OPERATOR_ERROR_CODES = frozenset(
    {
        "captcha_required",
        "two_factor_required",
        "invalid_credentials",
        "session_expired",
        "trading_view_unavailable",
        "rate_limited",
        "unexpected_answer",
    }
)
# Grants that failed only because TradingView was down or busy: retried automatically later.
OUTAGE_ERROR_CODES = frozenset({"trading_view_unavailable", "rate_limited"})
TRADINGVIEW_USERNAME_MAX_LENGTH = 64
_USERNAME_RE = re.compile(r"^[^\s/\\?#&%;,'\"<>]+$")


class AccessBusy(Exception):
    """Another worker holds the row right now; try again shortly."""


# ------------------------------------------------------------------------------------------------ helpers


def tradingview_client(*, store: TradingViewSessionStore | None = None, **options: Any) -> TradingViewClient:
    """Build a TradingView client from the settings with the session kept in the database."""
    for option, setting in (
        ("timeout", "TRADINGVIEW_TIMEOUT"),
        ("max_attempts", "TRADINGVIEW_MAX_ATTEMPTS"),
        ("backoff_seconds", "TRADINGVIEW_BACKOFF_SECONDS"),
    ):
        if hasattr(settings, setting):
            options.setdefault(option, getattr(settings, setting))
    return client_from_settings(store if store is not None else DatabaseSessionStore(), **options)


def actor_of(user) -> str:
    """The audit actor for a request: system when nobody asked, staff for staff, user otherwise."""
    if user is None:
        return Actor.SYSTEM
    return Actor.STAFF if user.is_staff else Actor.USER


def error_code(error: BaseException) -> str:
    """A short stable name for an error class: UserNotFound -> user_not_found."""
    return re.sub(r"(?<!^)(?=[A-Z])", "_", type(error).__name__).lower()


def _error_text(error: TradingViewError) -> str:
    notes = " ".join(getattr(error, "__notes__", []))
    return f"{error.message} {notes}".strip()


def access_log_write(
    *,
    operation: str,
    outcome: str,
    detail: str,
    actor: str = Actor.SYSTEM,
    actor_user=None,
    target_user=None,
    tradingview_username: str = "",
    pine_id: str = "",
) -> AccessLog:
    """Write one audit row (never a secret: TradingView's answers arrive here already summarised)."""
    return AccessLog.objects.create(
        operation=operation,
        outcome=outcome,
        detail=detail[:2000],
        actor=actor,
        actor_user=actor_user,
        target_user=target_user,
        tradingview_username=tradingview_username[:64],
        pine_id=pine_id,
    )


def _log_for_row(row: ScriptAccess, *, operation: str, outcome: str, detail: str) -> None:
    AccessLog.objects.create(
        operation=operation,
        outcome=outcome,
        detail=detail[:2000],
        actor=row.requested_by_actor,
        actor_user_id=row.requested_by_id,
        target_user_id=row.user_id,
        tradingview_username=row.tradingview_username,
        pine_id=row.script.pine_id,
    )


def _queue(task_name: str, *args: Any) -> None:
    """Send a task after the current transaction commits; a lost message is re-queued by the sweeper."""

    def send() -> None:
        from pineaccess import tasks

        try:
            getattr(tasks, task_name).delay(*args)
        except Exception:
            # The row is already saved as pending/removing: resume_script_access picks it up later.
            logger.exception("Could not queue %s%s; the periodic sweep will pick it up", task_name, args)

    transaction.on_commit(send)


def _expiry_after(days: int, base: datetime) -> datetime:
    # Whole seconds: TradingView keeps seconds only, and equal values make sync comparisons exact.
    return (base + timedelta(days=days)).replace(microsecond=0)


def _check_duration(duration_days: int | None) -> None:
    if duration_days is not None and (
        isinstance(duration_days, bool) or not isinstance(duration_days, int) or duration_days < 1
    ):
        raise ValidationError("The access duration must be a whole number of days, at least 1 (or lifetime).")


# ---------------------------------------------------------------------------- requests (caller's transaction)


def script_access_grant(
    *, user, scripts: Iterable[PineScript], duration_days: int | None, requested_by=None, queue: bool = True
) -> list[ScriptAccess]:
    """Create (or extend) pending access to the scripts for the user's TradingView username and queue the
    TradingView work after commit; duration None means lifetime. queue=False leaves the work to the caller
    (script_access_apply), as the commands do."""
    _check_duration(duration_days)
    username = (user.tradingview_username or "").strip()
    if not username:
        raise ValidationError(
            f"{user.get_username()} has no TradingView username yet, so access cannot be granted. "
            "Set one on the profile first."
        )
    scripts = list(scripts)
    inactive = [script.name for script in scripts if not script.active]
    if inactive:
        raise ValidationError(f"These scripts are switched off and cannot be granted: {', '.join(inactive)}.")
    rows = []
    with transaction.atomic():
        for script in scripts:
            row, changed = _grant_one(
                user=user, script=script, username=username, days=duration_days, requested_by=requested_by
            )
            rows.append(row)
            if changed and queue:
                _queue("grant_script_access", row.pk)
    return rows


def _grant_one(
    *, user, script: PineScript, username: str, days: int | None, requested_by
) -> tuple[ScriptAccess, bool]:
    now = timezone.now()
    existing = (
        ScriptAccess.objects.select_for_update().filter(selectors.LIVE, user=user, script=script).first()
    )
    if existing is None:
        try:
            # A savepoint, so losing a race to create the row does not break the caller's transaction.
            with transaction.atomic():
                row = ScriptAccess.objects.create(
                    user=user,
                    script=script,
                    tradingview_username=username,
                    status=Status.PENDING,
                    expires_at=None if days is None else _expiry_after(days, now),
                    requested_by=requested_by,
                    requested_by_actor=actor_of(requested_by),
                )
            return row, True
        except IntegrityError:
            existing = ScriptAccess.objects.select_for_update().get(selectors.LIVE, user=user, script=script)
    return _extend_row(existing, days=days, requested_by=requested_by, now=now)


def _extend_row(
    row: ScriptAccess, *, days: int | None, requested_by, now: datetime
) -> tuple[ScriptAccess, bool]:
    """Add `days` to a live row (lifetime stays lifetime) and make it pending again when anything changed."""
    if days is None:
        new_expiry = None
    elif row.status == Status.REMOVING:
        # The old access is ending, so the new time counts from now.
        new_expiry = _expiry_after(days, now)
    elif row.expires_at is None:
        new_expiry = None
    else:
        new_expiry = _expiry_after(days, max(row.expires_at, now))
    if row.status == Status.ACTIVE and new_expiry == row.expires_at:
        return row, False  # extending lifetime access changes nothing
    row.expires_at = new_expiry
    row.status = Status.PENDING
    row.last_error = ""
    row.error_code = ""
    row.requested_by = requested_by
    row.requested_by_actor = actor_of(requested_by)
    row.attempts = 0
    row.save(
        update_fields=[
            "expires_at",
            "status",
            "last_error",
            "error_code",
            "requested_by",
            "requested_by_actor",
            "attempts",
            "updated_at",
        ]
    )
    return row, True


def script_access_extend(*, access: ScriptAccess, days: int | None, requested_by=None) -> ScriptAccess:
    """Add days to one access (None: make it lifetime) and queue the change on TradingView."""
    _check_duration(days)
    with transaction.atomic():
        row = ScriptAccess.objects.select_for_update().select_related("script").get(pk=access.pk)
        if row.status == Status.REMOVED:
            raise ValidationError("This access was removed; grant the script again instead of extending it.")
        if row.status == Status.REMOVING:
            raise ValidationError("This access is being removed; grant the script again once it is removed.")
        if not row.script.active:
            raise ValidationError(f"{row.script.name} is switched off, so its access cannot be extended.")
        row, changed = _extend_row(row, days=days, requested_by=requested_by, now=timezone.now())
        if changed:
            _queue("grant_script_access", row.pk)
    return row


def script_access_set_expiry(
    *, access: ScriptAccess, expires_at: datetime | None, requested_by=None
) -> ScriptAccess:
    """Set an exact expiry (None: lifetime) on live access and queue the change on TradingView."""
    if expires_at is not None and expires_at <= timezone.now():
        raise ValidationError("The new expiry is in the past; revoke the access instead.")
    with transaction.atomic():
        row = ScriptAccess.objects.select_for_update().select_related("script").get(pk=access.pk)
        if row.status in (Status.REMOVED, Status.REMOVING):
            raise ValidationError("This access is removed or being removed; grant the script again instead.")
        new_expiry = None if expires_at is None else expires_at.replace(microsecond=0)
        if row.status == Status.ACTIVE and row.expires_at == new_expiry:
            return row
        row.expires_at = new_expiry
        row.status = Status.PENDING
        row.last_error = row.error_code = ""
        row.requested_by = requested_by
        row.requested_by_actor = actor_of(requested_by)
        row.attempts = 0
        row.save()
        _queue("grant_script_access", row.pk)
    return row


def script_access_revoke(*, access: ScriptAccess, requested_by=None, queue: bool = True) -> ScriptAccess:
    """Start removing one access: TradingView first (in a task, unless queue=False), then the database."""
    with transaction.atomic():
        updated = ScriptAccess.objects.filter(
            pk=access.pk, status__in=[Status.PENDING, Status.ACTIVE, Status.FAILED]
        ).update(
            status=Status.REMOVING,
            requested_by=requested_by,
            requested_by_actor=actor_of(requested_by),
            last_error="",
            error_code="",
            attempts=0,
            updated_at=timezone.now(),
        )
        if updated and queue:
            _queue("remove_script_access", access.pk)
    access.refresh_from_db()
    return access


def script_access_revoke_for_user(
    *, user, scripts: Iterable[PineScript] | None = None, requested_by=None, queue: bool = True
) -> list[ScriptAccess]:
    """Start removing the user's access to the scripts (all of them when none are named)."""
    rows = ScriptAccess.objects.filter(selectors.LIVE, user=user)
    if scripts is not None:
        rows = rows.filter(script__in=list(scripts))
    return [script_access_revoke(access=row, requested_by=requested_by, queue=queue) for row in rows]


def script_access_retry(*, access: ScriptAccess, requested_by=None) -> bool:
    """Put a failed grant back in the queue; True when it was failed."""
    with transaction.atomic():
        updated = ScriptAccess.objects.filter(pk=access.pk, status=Status.FAILED).update(
            status=Status.PENDING,
            requested_by=requested_by,
            requested_by_actor=actor_of(requested_by),
            attempts=0,
            updated_at=timezone.now(),
        )
        if updated:
            _queue("grant_script_access", access.pk)
    return bool(updated)


def script_access_retry_failed(*, codes: Iterable[str] | None = None, requested_by=None) -> int:
    """Queue again every failed grant (with one of the error codes, when given); return how many."""
    rows = ScriptAccess.objects.filter(status=Status.FAILED)
    if codes is not None:
        rows = rows.filter(error_code__in=list(codes))
    return sum(script_access_retry(access=row, requested_by=requested_by) for row in rows)


def script_access_expire_due(*, now: datetime | None = None, queue: bool = True) -> list[int]:
    """Mark every row whose time has passed as removing and (with queue) send its removal task."""
    now = now or timezone.now()
    ids = []
    with transaction.atomic():
        for pk in list(selectors.script_accesses_due(now=now).values_list("pk", flat=True)):
            # Conditional on status and time, so a grant or revocation that raced us wins cleanly.
            claimed = ScriptAccess.objects.filter(
                pk=pk, status__in=[Status.ACTIVE, Status.PENDING, Status.FAILED], expires_at__lte=now
            ).update(
                status=Status.REMOVING,
                requested_by=None,
                requested_by_actor=Actor.SYSTEM,
                attempts=0,
                updated_at=now,
            )
            if claimed:
                ids.append(pk)
                if queue:
                    _queue("remove_script_access", pk)
    return ids


def script_access_resume_stalled(
    *,
    never_tried_after: timedelta = timedelta(minutes=5),
    idle_after: timedelta = timedelta(minutes=45),
    failed_outage_after: timedelta = timedelta(hours=1),
) -> list[int]:
    """Queue again what a lost message or a crashed worker left behind, and retry grants an outage failed.

    A row no worker has tried yet is resumed after a few minutes; one that was tried, only after longer than
    the tasks' own retry backoff, so a task waiting for its retry is not doubled.
    """
    now = timezone.now()
    stalled = (
        ScriptAccess.objects.filter(status__in=[Status.PENDING, Status.REMOVING])
        .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))
        .filter(Q(attempts=0, updated_at__lt=now - never_tried_after) | Q(updated_at__lt=now - idle_after))
        .values_list("pk", "status")
    )
    resumed = []
    for pk, status in stalled:
        _queue("grant_script_access" if status == Status.PENDING else "remove_script_access", pk)
        resumed.append(pk)
    outage_failures = ScriptAccess.objects.filter(
        status=Status.FAILED, error_code__in=OUTAGE_ERROR_CODES, updated_at__lt=now - failed_outage_after
    )
    resumed += [row.pk for row in outage_failures if script_access_retry(access=row)]
    return resumed


# ------------------------------------------------------------------------------- work on TradingView (tasks)


@dataclass(frozen=True)
class AccessWorkResult:
    """What one pass over an access row did."""

    access_id: int
    status: str
    done: bool
    detail: str = ""


def _claim(pk: int, status: str) -> str | None:
    now = timezone.now()
    token = secrets.token_hex(8)
    claimed = (
        ScriptAccess.objects.filter(pk=pk, status=status)
        .filter(Q(claimed_until__isnull=True) | Q(claimed_until__lt=now))
        .update(claimed_until=now + CLAIM_LEASE, claim_token=token, attempts=F("attempts") + 1)
    )
    return token if claimed else None


def _release(pk: int, token: str, **changes: Any) -> int:
    return ScriptAccess.objects.filter(pk=pk, claim_token=token).update(
        claimed_until=None, claim_token="", updated_at=timezone.now(), **changes
    )


def script_access_apply(
    *, access_id: int, final_attempt: bool = True, client: TradingViewClient | None = None
) -> AccessWorkResult:
    """Make TradingView match one row: grant a pending row, remove a removing one, leave others alone.

    Raises TradingViewUnavailable or RateLimited when not final_attempt (the task retries later) and
    AccessBusy when another worker holds the row.
    """
    row = ScriptAccess.objects.select_related("script").filter(pk=access_id).first()
    if row is None:
        return AccessWorkResult(access_id, "deleted", True, "the access row no longer exists")
    if row.status not in (Status.PENDING, Status.REMOVING):
        return AccessWorkResult(access_id, row.status, True, "nothing to do")
    token = _claim(row.pk, row.status)
    if token is None:
        row.refresh_from_db()
        if row.status not in (Status.PENDING, Status.REMOVING):
            return AccessWorkResult(access_id, row.status, True, "nothing to do")
        raise AccessBusy(f"Access {access_id} is being worked on by another worker.")
    row.refresh_from_db()
    own_client = client is None
    client = client or tradingview_client()
    try:
        if row.status == Status.PENDING:
            return _grant_claimed(row, token, client, final_attempt=final_attempt)
        return _remove_claimed(row, token, client, final_attempt=final_attempt)
    except BaseException:
        _release(row.pk, token)
        raise
    finally:
        if own_client:
            client.close()


def _grant_claimed(
    row: ScriptAccess, token: str, client: TradingViewClient, *, final_attempt: bool
) -> AccessWorkResult:
    operation = Operation.EXTEND if row.granted_at else Operation.GRANT
    expiration = row.expires_at
    pine_id = row.script.pine_id
    if expiration is not None and expiration <= timezone.now():
        # The time ran out before TradingView was told: nothing left to grant, so remove instead.
        _release(
            row.pk,
            token,
            status=Case(When(status=Status.PENDING, then=Value(Status.REMOVING)), default=F("status")),
        )
        _queue("remove_script_access", row.pk)
        return AccessWorkResult(row.pk, Status.REMOVING, False, "expired before it was granted")
    try:
        username = client.resolve_username(row.tradingview_username)
        result = client.grant_access(pine_id, username, expiration, replace_lifetime=True)
    except TRANSIENT_ERRORS as error:
        if not final_attempt:
            _release(row.pk, token, last_error=_error_text(error), error_code=error_code(error))
            _log_for_row(
                row, operation=operation, outcome=Outcome.FAILURE, detail=f"{error.summary}; will retry"
            )
            raise
        return _fail_grant(row, token, operation, error)
    except TradingViewError as error:
        return _fail_grant(row, token, operation, error)

    changed = _release(
        row.pk,
        token,
        status=Case(
            When(Q(status=Status.PENDING) & _same_expiry(expiration), then=Value(Status.ACTIVE)),
            default=F("status"),
        ),
        granted_at=Case(
            When(Q(status=Status.PENDING) & _same_expiry(expiration), then=Value(timezone.now())),
            default=F("granted_at"),
        ),
        tradingview_username=username,
        last_error="",
        error_code="",
    )
    row.tradingview_username = username
    _log_for_row(row, operation=operation, outcome=Outcome.SUCCESS, detail=result.summary)
    get_user_model().objects.filter(pk=row.user_id, tradingview_username__iexact=username).update(
        tradingview_verified=True
    )
    row.refresh_from_db()
    if changed and row.status == Status.PENDING:
        # The expiry changed while TradingView was being told the old one: tell it again.
        _queue("grant_script_access", row.pk)
    elif changed and row.status == Status.REMOVING:
        _queue("remove_script_access", row.pk)
    return AccessWorkResult(row.pk, row.status, row.status == Status.ACTIVE, result.summary)


def _same_expiry(expiration: datetime | None) -> Q:
    return Q(expires_at__isnull=True) if expiration is None else Q(expires_at=expiration)


def _fail_grant(row: ScriptAccess, token: str, operation: str, error: TradingViewError) -> AccessWorkResult:
    _release(
        row.pk,
        token,
        status=Case(When(status=Status.PENDING, then=Value(Status.FAILED)), default=F("status")),
        last_error=_error_text(error),
        error_code=error_code(error),
    )
    _log_for_row(row, operation=operation, outcome=Outcome.FAILURE, detail=error.summary)
    if isinstance(error, SIGN_IN_ERRORS):
        _log_sign_in_failure(error)
    logger.warning(
        "Granting %s on %s failed: %s", row.tradingview_username, row.script.pine_id, error.summary
    )
    row.refresh_from_db()
    if row.status == Status.REMOVING:
        _queue("remove_script_access", row.pk)
    return AccessWorkResult(row.pk, row.status, False, error.summary)


def _log_sign_in_failure(error: TradingViewError) -> None:
    access_log_write(operation=Operation.LOGIN, outcome=Outcome.FAILURE, detail=error.summary)


def _remove_on_tradingview(client: TradingViewClient, pine_id: str, username: str) -> str:
    """Remove a user's access; a username TradingView does not know has nothing to remove."""
    try:
        return client.remove_access(pine_id, username)
    except ScriptNotAccessible:
        # TradingView answers "Wrong credentials or pineId" for an unknown username as well as a wrong script.
        if client.username_hint(username) is None:
            return "no_such_user"
        raise


def _remove_claimed(
    row: ScriptAccess, token: str, client: TradingViewClient, *, final_attempt: bool
) -> AccessWorkResult:
    pine_id = row.script.pine_id
    try:
        answer = _remove_on_tradingview(client, pine_id, row.tradingview_username)
    except TradingViewError as error:
        # A removal never gives up: the row stays removing with the reason and the sweep tries again later.
        _release(row.pk, token, last_error=_error_text(error), error_code=error_code(error))
        retrying = isinstance(error, TRANSIENT_ERRORS) and not final_attempt
        _log_for_row(
            row,
            operation=Operation.REMOVE,
            outcome=Outcome.FAILURE,
            detail=f"{error.summary}; will retry" if retrying else error.summary,
        )
        if isinstance(error, SIGN_IN_ERRORS):
            _log_sign_in_failure(error)
        if retrying:
            raise
        return AccessWorkResult(row.pk, Status.REMOVING, False, error.summary)
    detail = {
        "ok": f"removed {row.tradingview_username} from {pine_id}",
        "not_exists": f"{row.tradingview_username} had no access to {pine_id} on TradingView",
        "no_such_user": f"there is no TradingView user {row.tradingview_username}; nothing to remove",
    }[answer]
    changed = _release(
        row.pk,
        token,
        status=Case(When(status=Status.REMOVING, then=Value(Status.REMOVED)), default=F("status")),
        removed_at=Case(When(status=Status.REMOVING, then=Value(timezone.now())), default=F("removed_at")),
        last_error="",
        error_code="",
    )
    _log_for_row(row, operation=Operation.REMOVE, outcome=Outcome.SUCCESS, detail=detail)
    row.refresh_from_db()
    if changed and row.status == Status.PENDING:
        # Granted again while the removal was running: grant it back now.
        _queue("grant_script_access", row.pk)
    return AccessWorkResult(row.pk, row.status, row.status == Status.REMOVED, detail)


# ------------------------------------------------------------------------------------------------ scripts


def pine_script_create(
    *, pine_id: str, name: str = "", description: str = "", active: bool = True
) -> PineScript:
    """Add a script to the catalogue; the name defaults to the id until TradingView tells us its name."""
    pine_id = pine_id.strip()
    script = PineScript(pine_id=pine_id, name=name.strip() or pine_id, description=description, active=active)
    script.full_clean()
    script.save()
    return script


def pine_script_update(*, script: PineScript, requested_by=None, **changes: Any) -> PineScript:
    """Change a script's name, description or active flag; switching it off removes everyone's access."""
    allowed = {"name", "description", "active"}
    unknown = set(changes) - allowed
    if unknown:
        raise ValidationError(f"These fields cannot be changed: {', '.join(sorted(unknown))}.")
    wanted_active = changes.pop("active", script.active)
    deactivate = script.active and not wanted_active
    activate = not script.active and wanted_active
    for name, value in changes.items():
        setattr(script, name, value)
    if changes:
        script.full_clean()
        script.save(update_fields=[*changes, "updated_at"])
    if activate:
        script.active = True
        script.save(update_fields=["active", "updated_at"])
        access_log_write(
            operation=Operation.DEACTIVATE,
            outcome=Outcome.SUCCESS,
            detail=f"switched {script.name} on again",
            actor=actor_of(requested_by),
            actor_user=requested_by,
            pine_id=script.pine_id,
        )
    if deactivate:
        pine_script_deactivate(script=script, requested_by=requested_by)
        script.refresh_from_db()
    return script


def pine_script_delete(*, script: PineScript) -> None:
    """Delete a script that has no grants left; one with grants must be switched off first."""
    with transaction.atomic():
        if ScriptAccess.objects.filter(script=script).exists():
            raise ValidationError(
                f"{script.name} still has access rows. Switch it off first: that removes everyone's access "
                "on TradingView and deletes its grants; then it can be deleted."
            )
        script.delete()


def pine_script_deactivate(*, script: PineScript, requested_by=None) -> int:
    """Switch a script off: every live access goes to removing now; a task removes everyone on TradingView
    and then deletes the script's grants. Returns how many rows are being removed."""
    with transaction.atomic():
        PineScript.objects.filter(pk=script.pk).update(active=False, updated_at=timezone.now())
        count = ScriptAccess.objects.filter(
            script=script, status__in=[Status.PENDING, Status.ACTIVE, Status.FAILED]
        ).update(
            status=Status.REMOVING,
            requested_by=requested_by,
            requested_by_actor=actor_of(requested_by),
            attempts=0,
            updated_at=timezone.now(),
        )
        access_log_write(
            operation=Operation.DEACTIVATE,
            outcome=Outcome.SUCCESS,
            detail=f"switched {script.name} off; removing everyone's access",
            actor=actor_of(requested_by),
            actor_user=requested_by,
            pine_id=script.pine_id,
        )
        _queue("remove_everyone_from_script", script.pk)
    script.active = False
    return count


@dataclass
class RemoveEveryoneResult:
    """What removing everyone from a switched-off script did."""

    pine_id: str
    removed_rows: int = 0
    removed_unknown: list[str] = field(default_factory=list)
    deleted_rows: int = 0
    failures: list[str] = field(default_factory=list)
    skipped: str = ""

    @property
    def ok(self) -> bool:
        """Whether everyone is gone and the grants were deleted."""
        return not self.failures and not self.skipped


def pine_script_remove_everyone(
    *,
    script_id: int,
    client: TradingViewClient | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> RemoveEveryoneResult:
    """Remove every user of a switched-off script on TradingView, then delete its grants here.

    Transient TradingView errors propagate so the task retries; nothing is deleted until everyone is gone.
    """
    script = PineScript.objects.get(pk=script_id)
    result = RemoveEveryoneResult(script.pine_id)
    if script.active:
        result.skipped = "the script was switched on again"
        return result
    own_client = client is None
    client = client or tradingview_client()
    try:
        _remove_everyone(script, result, client, progress)
    except TRANSIENT_ERRORS:
        raise
    except TradingViewError as error:
        result.failures.append(error.summary)
        access_log_write(
            operation=Operation.DEACTIVATE,
            outcome=Outcome.FAILURE,
            detail=f"could not remove everyone: {error.summary}",
            pine_id=script.pine_id,
        )
        if isinstance(error, SIGN_IN_ERRORS):
            _log_sign_in_failure(error)
    finally:
        if own_client:
            client.close()
    if result.failures or result.skipped:
        return result
    with transaction.atomic():
        if PineScript.objects.select_for_update().filter(pk=script.pk, active=False).exists():
            # Only rows that were removed: a grant made after switching it on again is left alone.
            result.deleted_rows, _ = ScriptAccess.objects.filter(
                script=script, status=Status.REMOVED
            ).delete()
            access_log_write(
                operation=Operation.DEACTIVATE,
                outcome=Outcome.SUCCESS,
                detail=(
                    f"everyone removed from {script.pine_id} on TradingView; "
                    f"{result.deleted_rows} grants deleted"
                ),
                pine_id=script.pine_id,
            )
        else:
            result.skipped = "the script was switched on again"
    return result


def _remove_everyone(
    script: PineScript,
    result: RemoveEveryoneResult,
    client: TradingViewClient,
    progress: Callable[[int, int], None] | None,
) -> None:
    rows = list(
        ScriptAccess.objects.filter(script=script, status=Status.REMOVING).values_list("pk", flat=True)
    )
    listed = client.list_users(script.pine_id)
    total = len(rows) + len(listed)
    for done, pk in enumerate(rows, start=1):
        outcome = script_access_apply(access_id=pk, final_attempt=False, client=client)
        if outcome.status == Status.REMOVED:
            result.removed_rows += 1
        else:
            result.failures.append(f"access {pk}: {outcome.detail}")
        if progress:
            progress(done, total)
    # Everyone else TradingView still lists (granted by hand, or a row lost here) goes too.
    remaining = client.list_users(script.pine_id) if rows else listed
    for done, user in enumerate(remaining, start=len(rows) + 1):
        if not PineScript.objects.filter(pk=script.pk, active=False).exists():
            result.skipped = "the script was switched on again"
            return
        try:
            client.remove_access(script.pine_id, user.username)
        except TRANSIENT_ERRORS:
            raise
        except TradingViewError as error:
            result.failures.append(f"{user.username}: {error.summary}")
            access_log_write(
                operation=Operation.REMOVE,
                outcome=Outcome.FAILURE,
                detail=error.summary,
                tradingview_username=user.username,
                pine_id=script.pine_id,
            )
        else:
            result.removed_unknown.append(user.username)
            access_log_write(
                operation=Operation.REMOVE,
                outcome=Outcome.SUCCESS,
                detail=f"removed {user.username} from switched-off {script.pine_id}",
                tradingview_username=user.username,
                pine_id=script.pine_id,
            )
        if progress:
            progress(done, total)


def pine_script_load_defaults() -> list[PineScript]:
    """Make sure every script in DEFAULT_PINE_IDS is in the catalogue (idempotent, no network)."""
    for raw in settings.DEFAULT_PINE_IDS:
        if raw.strip() and not is_pine_id(raw.strip()):
            logger.warning("DEFAULT_PINE_IDS holds %r, which is not a TradingView script id; skipped", raw)
    ids = selectors.default_pine_ids()
    PineScript.objects.bulk_create(
        [PineScript(pine_id=pine_id, name=pine_id) for pine_id in ids], ignore_conflicts=True
    )
    by_id = {script.pine_id: script for script in PineScript.objects.filter(pine_id__in=ids)}
    return [by_id[pine_id] for pine_id in ids if pine_id in by_id]


def pine_script_refresh_names(*, client: TradingViewClient | None = None) -> int:
    """Fill in the names of scripts still named by their id, from TradingView; return how many changed."""
    unnamed = {script.pine_id: script for script in PineScript.objects.filter(name=F("pine_id"))}
    if not unnamed:
        return 0
    own_client = client is None
    client = client or tradingview_client()
    try:
        names = client.script_names(unnamed)
    finally:
        if own_client:
            client.close()
    changed = 0
    for pine_id, name in names.items():
        if pine_id in unnamed and name.strip():
            changed += PineScript.objects.filter(pk=unnamed[pine_id].pk, name=pine_id).update(
                name=name.strip()[:200], updated_at=timezone.now()
            )
    return changed


# --------------------------------------------------------------------------------------------------- sync


def _seconds(value: datetime | None) -> datetime | None:
    return None if value is None else value.replace(microsecond=0)


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat()


def pine_script_sync(
    *,
    script: PineScript,
    fix: bool = False,
    requested_by=None,
    client: TradingViewClient | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> SyncReport:
    """Compare who has access on TradingView with the active rows here, keep the report, and with fix make
    TradingView match the database."""
    actor = actor_of(requested_by)
    report = SyncReport(
        script=script, pine_id=script.pine_id, fix_requested=fix, actor=actor, requested_by=requested_by
    )
    own_client = client is None
    client = client or tradingview_client()
    try:
        try:
            listed = client.list_users(script.pine_id)
        except TradingViewError as error:
            report.outcome = SyncReport.Outcome.FAILED
            report.error = _error_text(error)
            report.finished_at = timezone.now()
            report.save()
            access_log_write(
                operation=Operation.SYNC,
                outcome=Outcome.FAILURE,
                detail=error.summary,
                actor=actor,
                actor_user=requested_by,
                pine_id=script.pine_id,
            )
            return report
        _compare(report, script, listed)
        if fix and report.drift_count:
            _fix_drift(report, script, client, progress=progress)
    finally:
        if own_client:
            client.close()
    if not report.drift_count:
        report.outcome = SyncReport.Outcome.CLEAN
    elif not fix:
        report.outcome = SyncReport.Outcome.DRIFT
    elif report.fix_errors:
        report.outcome = SyncReport.Outcome.PARTLY_FIXED
    else:
        report.outcome = SyncReport.Outcome.FIXED
    report.finished_at = timezone.now()
    report.save()
    access_log_write(
        operation=Operation.SYNC,
        outcome=Outcome.FAILURE if report.fix_errors else Outcome.SUCCESS,
        detail=(
            f"{report.get_outcome_display()}: {len(report.only_on_tradingview)} only on TradingView, "
            f"{len(report.only_here)} only here, {len(report.different_expiry)} with another expiry"
            + (f"; {len(report.fixes)} fixed" if fix else "")
        ),
        actor=actor,
        actor_user=requested_by,
        pine_id=script.pine_id,
    )
    return report


def _compare(report: SyncReport, script: PineScript, listed: list[ScriptUser]) -> None:
    now = timezone.now()
    there = {user.username.casefold(): user for user in listed}
    live = list(ScriptAccess.objects.filter(selectors.LIVE, script=script).select_related("user"))
    by_name = {row.tradingview_username.casefold(): row for row in live}
    active = [row for row in live if row.status == Status.ACTIVE]
    report.tradingview_count = len(listed)
    report.database_count = len(active)
    for key, user in sorted(there.items()):
        row = by_name.get(key)
        if row is None or row.status == Status.FAILED:
            report.only_on_tradingview.append(
                {
                    "username": user.username,
                    "expiration": _iso(user.expiration),
                    "access_id": row.pk if row else None,
                    "note": "the grant is marked failed here" if row else "",
                }
            )
        elif row.status == Status.ACTIVE and _seconds(row.expires_at) != _seconds(user.expiration):
            if row.expires_at is not None and row.expires_at <= now:
                continue  # past its time: the expiry sweep removes it
            report.different_expiry.append(
                {
                    "access_id": row.pk,
                    "username": user.username,
                    "here": _iso(row.expires_at),
                    "there": _iso(user.expiration),
                }
            )
    for row in active:
        if row.tradingview_username.casefold() in there:
            continue
        if row.expires_at is not None and row.expires_at <= now:
            continue  # TradingView already dropped it; the expiry sweep finishes the job here
        report.only_here.append(
            {"access_id": row.pk, "username": row.tradingview_username, "expires_at": _iso(row.expires_at)}
        )


def _fix_drift(
    report: SyncReport,
    script: PineScript,
    client: TradingViewClient,
    *,
    progress: Callable[[int, int], None] | None,
) -> None:
    items: list[tuple[str, dict]] = [
        *(("remove", item) for item in report.only_on_tradingview),
        *(("grant", item) for item in report.only_here),
        *(("grant", item) for item in report.different_expiry),
    ]
    for done, (action, item) in enumerate(items, start=1):
        try:
            if action == "remove" and item["access_id"] is None:
                client.remove_access(script.pine_id, item["username"])
                report.fixes.append(f"removed {item['username']} from TradingView")
                access_log_write(
                    operation=Operation.REMOVE,
                    outcome=Outcome.SUCCESS,
                    detail=f"sync: removed {item['username']}, who has no access here",
                    actor=report.actor,
                    actor_user=report.requested_by,
                    tradingview_username=item["username"],
                    pine_id=script.pine_id,
                )
            else:
                _regrant_for_sync(report, item, client)
        except TradingViewError as error:
            report.fix_errors.append(f"{item['username']}: {error.summary}")
        except AccessBusy:
            report.fix_errors.append(f"{item['username']}: a worker is changing this access right now")
        if progress:
            progress(done, len(items))


def _regrant_for_sync(report: SyncReport, item: dict, client: TradingViewClient) -> None:
    pk = item["access_id"]
    ScriptAccess.objects.filter(pk=pk, status__in=[Status.ACTIVE, Status.FAILED]).update(
        status=Status.PENDING,
        requested_by=report.requested_by,
        requested_by_actor=report.actor,
        updated_at=timezone.now(),
    )
    # Not the final attempt: on an outage the row stays pending and the periodic resume retries it.
    outcome = script_access_apply(access_id=pk, final_attempt=False, client=client)
    if outcome.status == Status.ACTIVE:
        report.fixes.append(f"granted {item['username']} as recorded here ({outcome.detail})")
    else:
        report.fix_errors.append(f"{item['username']}: {outcome.detail}")


@dataclass
class SyncRun:
    """The reports of one sync over several scripts."""

    reports: list[SyncReport] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """Whether every script could be compared (and fixed, when asked)."""
        return all(
            report.outcome not in (SyncReport.Outcome.FAILED, SyncReport.Outcome.PARTLY_FIXED)
            for report in self.reports
        )


def pine_scripts_sync(
    *,
    scripts: Iterable[PineScript] | None = None,
    fix: bool = False,
    requested_by=None,
    progress: Callable[[int, int], None] | None = None,
) -> SyncRun:
    """Sync every active script (or the ones given) with one client, one report each."""
    scripts = list(scripts if scripts is not None else PineScript.objects.filter(active=True))
    run = SyncRun()
    with tradingview_client() as client:
        try:
            pine_script_refresh_names(client=client)
        except TradingViewError as error:
            logger.info("Could not fetch script names from TradingView: %s", error.summary)
        for done, script in enumerate(scripts, start=1):
            run.reports.append(
                pine_script_sync(script=script, fix=fix, requested_by=requested_by, client=client)
            )
            if progress:
                progress(done, len(scripts))
    return run


# ----------------------------------------------------------------------------------------------- usernames


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


# ------------------------------------------------------------------------------------------------ session


def tradingview_session_paste(*, sessionid: str, sessionid_sign: str | None = None, requested_by=None) -> int:
    """Save session cookies pasted from a browser once TradingView accepts them, then retry the grants that
    failed for want of a session; return how many were queued again. Raises ValueError or TradingViewError."""
    store = DatabaseSessionStore(source=TradingViewSession.Source.PASTED, saved_by=requested_by)
    with tradingview_client(store=store) as client:
        try:
            client.use_session_cookies(sessionid, sessionid_sign or None)
        except TradingViewError as error:
            access_log_write(
                operation=Operation.LOGIN,
                outcome=Outcome.FAILURE,
                detail=error.summary,
                actor=actor_of(requested_by),
                actor_user=requested_by,
            )
            raise
    return script_access_retry_failed(codes=OPERATOR_ERROR_CODES, requested_by=requested_by)


@dataclass(frozen=True)
class ConnectionCheck:
    """Whether we can use TradingView: signed in, the account's scripts, and one script's access list."""

    ok: bool
    account: str
    scripts: tuple[str, ...] = ()
    checked_pine_id: str = ""
    listed_users: int | None = None
    error: str = ""


def tradingview_connection_check(*, pine_id: str | None = None) -> ConnectionCheck:
    """Sign in (or reuse the session), list the account's scripts and the users of one script."""
    with tradingview_client() as client:
        account = client.username or "(pasted session)"
        try:
            scripts = tuple(client.list_scripts())
            target = pine_id or next(
                (s.pine_id for s in PineScript.objects.filter(active=True) if s.pine_id in scripts),
                scripts[0] if scripts else "",
            )
            listed = len(client.list_users(target)) if target else None
        except TradingViewError as error:
            if isinstance(error, SIGN_IN_ERRORS):
                _log_sign_in_failure(error)
            return ConnectionCheck(False, account, error=_error_text(error))
    return ConnectionCheck(True, account, scripts, target, listed)


# The registration page sets this in the session once a valid access key was entered, so people who are
# registering (not yet logged in) may check their TradingView username as they type.
USERNAME_CHECK_SESSION_KEY = "pineaccess_may_check_tradingview_username"


def username_check_allow(session) -> None:
    """Let an anonymous session use the username check (called when a registration starts)."""
    session[USERNAME_CHECK_SESSION_KEY] = True
