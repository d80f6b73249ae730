"""The script catalogue: add, change, switch off (removing everyone on TradingView) and delete scripts."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import transaction
from django.db.models import F
from django.utils import timezone

from pineaccess import selectors
from pineaccess.models import AccessLog, PineScript, ScriptAccess
from pineaccess.services import publish
from pineaccess.services.access import script_access_apply
from pineaccess.services.audit import access_log_write, actor_of, sign_in_failure_log
from pineaccess.services.client import SIGN_IN_ERRORS, TRANSIENT_ERRORS, tradingview_client
from pineaccess.tradingview import TradingViewClient, TradingViewError, is_pine_id

logger = logging.getLogger(__name__)

Status = ScriptAccess.Status
Operation = AccessLog.Operation
Outcome = AccessLog.Outcome


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
        publish.task_after_commit(publish.REMOVE_EVERYONE_FROM_SCRIPT, script.pk)
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
            sign_in_failure_log(error)
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
