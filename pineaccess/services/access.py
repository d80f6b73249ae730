"""Access to a script for one user: requests in the caller's transaction, TradingView work in tasks after it.

Every access row moves pending → active (or failed with the reason) and active → removing → removed. A worker
claims a row with a conditional UPDATE (a short lease) before it talks to TradingView, so two workers never
act on one row and a second run of the same task finds nothing to do.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.db.models import Case, F, Q, Value, When
from django.utils import timezone

from pineaccess import selectors
from pineaccess.models import AccessLog, Actor, PineScript, ScriptAccess
from pineaccess.services import publish
from pineaccess.services.audit import access_log_write_for_row, actor_of, sign_in_failure_log
from pineaccess.services.client import (
    OUTAGE_ERROR_CODES,
    SIGN_IN_ERRORS,
    TRANSIENT_ERRORS,
    error_code,
    error_text,
    tradingview_client,
)
from pineaccess.tradingview import ScriptNotAccessible, TradingViewClient, TradingViewError

logger = logging.getLogger(__name__)

Status = ScriptAccess.Status
Operation = AccessLog.Operation
Outcome = AccessLog.Outcome

# Longer than CELERY_TASK_TIME_LIMIT, so a lease only runs out when its worker is gone.
CLAIM_LEASE = timedelta(minutes=6)


class AccessBusy(Exception):
    """Another worker holds the row right now; try again shortly."""


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
                publish.task_after_commit(publish.GRANT_SCRIPT_ACCESS, row.pk)
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
            publish.task_after_commit(publish.GRANT_SCRIPT_ACCESS, row.pk)
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
        publish.task_after_commit(publish.GRANT_SCRIPT_ACCESS, row.pk)
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
            publish.task_after_commit(publish.REMOVE_SCRIPT_ACCESS, access.pk)
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
            publish.task_after_commit(publish.GRANT_SCRIPT_ACCESS, access.pk)
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
                    publish.task_after_commit(publish.REMOVE_SCRIPT_ACCESS, pk)
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
        publish.task_after_commit(
            publish.GRANT_SCRIPT_ACCESS if status == Status.PENDING else publish.REMOVE_SCRIPT_ACCESS, pk
        )
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
        publish.task_after_commit(publish.REMOVE_SCRIPT_ACCESS, row.pk)
        return AccessWorkResult(row.pk, Status.REMOVING, False, "expired before it was granted")
    try:
        username = client.resolve_username(row.tradingview_username)
        result = client.grant_access(pine_id, username, expiration, replace_lifetime=True)
    except TRANSIENT_ERRORS as error:
        if not final_attempt:
            _release(row.pk, token, last_error=error_text(error), error_code=error_code(error))
            access_log_write_for_row(
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
    access_log_write_for_row(row, operation=operation, outcome=Outcome.SUCCESS, detail=result.summary)
    get_user_model().objects.filter(pk=row.user_id, tradingview_username__iexact=username).update(
        tradingview_verified=True
    )
    row.refresh_from_db()
    if changed and row.status == Status.PENDING:
        # The expiry changed while TradingView was being told the old one: tell it again.
        publish.task_after_commit(publish.GRANT_SCRIPT_ACCESS, row.pk)
    elif changed and row.status == Status.REMOVING:
        publish.task_after_commit(publish.REMOVE_SCRIPT_ACCESS, row.pk)
    return AccessWorkResult(row.pk, row.status, row.status == Status.ACTIVE, result.summary)


def _same_expiry(expiration: datetime | None) -> Q:
    return Q(expires_at__isnull=True) if expiration is None else Q(expires_at=expiration)


def _fail_grant(row: ScriptAccess, token: str, operation: str, error: TradingViewError) -> AccessWorkResult:
    _release(
        row.pk,
        token,
        status=Case(When(status=Status.PENDING, then=Value(Status.FAILED)), default=F("status")),
        last_error=error_text(error),
        error_code=error_code(error),
    )
    access_log_write_for_row(row, operation=operation, outcome=Outcome.FAILURE, detail=error.summary)
    if isinstance(error, SIGN_IN_ERRORS):
        sign_in_failure_log(error)
    logger.warning(
        "Granting %s on %s failed: %s", row.tradingview_username, row.script.pine_id, error.summary
    )
    row.refresh_from_db()
    if row.status == Status.REMOVING:
        publish.task_after_commit(publish.REMOVE_SCRIPT_ACCESS, row.pk)
    return AccessWorkResult(row.pk, row.status, False, error.summary)


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
        _release(row.pk, token, last_error=error_text(error), error_code=error_code(error))
        retrying = isinstance(error, TRANSIENT_ERRORS) and not final_attempt
        access_log_write_for_row(
            row,
            operation=Operation.REMOVE,
            outcome=Outcome.FAILURE,
            detail=f"{error.summary}; will retry" if retrying else error.summary,
        )
        if isinstance(error, SIGN_IN_ERRORS):
            sign_in_failure_log(error)
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
    access_log_write_for_row(row, operation=Operation.REMOVE, outcome=Outcome.SUCCESS, detail=detail)
    row.refresh_from_db()
    if changed and row.status == Status.PENDING:
        # Granted again while the removal was running: grant it back now.
        publish.task_after_commit(publish.GRANT_SCRIPT_ACCESS, row.pk)
    return AccessWorkResult(row.pk, row.status, row.status == Status.REMOVED, detail)
