"""Sync: compare who has access on TradingView with the rows here, keep a report, fix drift on request."""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime

from django.utils import timezone

from pineaccess import selectors
from pineaccess.models import AccessLog, PineScript, ScriptAccess, SyncReport
from pineaccess.services.access import AccessBusy, script_access_apply
from pineaccess.services.audit import access_log_write, actor_of
from pineaccess.services.client import error_text, tradingview_client
from pineaccess.services.scripts import pine_script_refresh_names
from pineaccess.tradingview import ScriptUser, TradingViewClient, TradingViewError

logger = logging.getLogger(__name__)

Status = ScriptAccess.Status
Operation = AccessLog.Operation
Outcome = AccessLog.Outcome


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
            report.error = error_text(error)
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
