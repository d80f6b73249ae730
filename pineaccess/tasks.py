"""Celery tasks for Pine Script access: thin wrappers that take ids and call services.

Every task is safe to run twice: the services claim rows with conditional UPDATEs, so a repeated or late
message finds nothing to do. Transient TradingView errors are retried with backoff; permanent ones are
recorded on the row (failed with the reason) and never retried.
"""

from __future__ import annotations

import logging
import random

from celery import shared_task

from pineaccess.services import publish
from pineaccess.services.access import (
    AccessBusy,
    script_access_apply,
    script_access_expire_due,
    script_access_resume_stalled,
)
from pineaccess.services.scripts import pine_script_remove_everyone
from pineaccess.services.sync import pine_scripts_sync
from pineaccess.services.usernames import tradingview_usernames_recheck
from pineaccess.tradingview import RateLimited, TradingViewUnavailable

logger = logging.getLogger(__name__)

GRANT_MAX_RETRIES = 6
BUSY_RETRY_SECONDS = 30


def retry_countdown(retries: int, *, base: float = 30.0, cap: float = 1800.0) -> float:
    """Exponential backoff with jitter: about 30 s, 1, 2, 4, 8, 16 minutes, never above 30 minutes."""
    delay = min(cap, base * 2**retries)
    return delay * random.uniform(0.8, 1.2)  # noqa: S311  (jitter, not cryptography)


def _apply(task, access_id: int) -> dict:
    final = task.request.retries >= task.max_retries
    try:
        result = script_access_apply(access_id=access_id, final_attempt=final)
    except (TradingViewUnavailable, RateLimited) as error:
        raise task.retry(exc=error, countdown=retry_countdown(task.request.retries)) from error
    except AccessBusy as error:
        raise task.retry(exc=error, countdown=BUSY_RETRY_SECONDS) from error
    return {"access_id": result.access_id, "status": result.status, "detail": result.detail}


@shared_task(bind=True, name=publish.GRANT_SCRIPT_ACCESS, max_retries=GRANT_MAX_RETRIES)
def grant_script_access(self, access_id: int) -> dict:
    """Grant (or extend) one pending access on TradingView."""
    return _apply(self, access_id)


@shared_task(bind=True, name=publish.REMOVE_SCRIPT_ACCESS, max_retries=GRANT_MAX_RETRIES)
def remove_script_access(self, access_id: int) -> dict:
    """Remove one access on TradingView, then mark it removed."""
    return _apply(self, access_id)


@shared_task(bind=True, name=publish.REMOVE_EVERYONE_FROM_SCRIPT, max_retries=GRANT_MAX_RETRIES)
def remove_everyone_from_script(self, script_id: int) -> dict:
    """Remove every user of a switched-off script on TradingView, then delete its grants."""
    try:
        result = pine_script_remove_everyone(script_id=script_id)
    except (TradingViewUnavailable, RateLimited, AccessBusy) as error:
        raise self.retry(exc=error, countdown=retry_countdown(self.request.retries)) from error
    if result.failures:
        logger.error("Could not remove everyone from %s: %s", result.pine_id, "; ".join(result.failures))
    return {
        "pine_id": result.pine_id,
        "deleted_rows": result.deleted_rows,
        "failures": result.failures,
        "skipped": result.skipped,
    }


@shared_task(name="pineaccess.tasks.expire_script_access")
def expire_script_access() -> int:
    """Start removing every access whose time has passed; return how many."""
    return len(script_access_expire_due())


@shared_task(name="pineaccess.tasks.resume_script_access")
def resume_script_access() -> int:
    """Queue again the pending and removing rows a lost message or a crashed worker left behind."""
    return len(script_access_resume_stalled())


@shared_task(name="pineaccess.tasks.sync_pine_scripts")
def sync_pine_scripts(fix: bool = False) -> dict:
    """Compare every active script's access list on TradingView with the database and keep the reports."""
    run = pine_scripts_sync(fix=fix)
    return {report.pine_id: report.outcome for report in run.reports}


@shared_task(bind=True, name="pineaccess.tasks.recheck_tradingview_usernames", max_retries=3)
def recheck_tradingview_usernames(self) -> dict:
    """Check again the usernames saved while TradingView could not be reached."""
    result = tradingview_usernames_recheck()
    return {"verified": result.verified, "not_found": result.not_found, "unreachable": result.unreachable}
