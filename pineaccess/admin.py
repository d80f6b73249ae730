"""Operator console for scripts, access, the audit log, sync reports and the TradingView session."""

from __future__ import annotations

from datetime import timedelta

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ACTION_CHECKBOX_NAME
from django.core.exceptions import ValidationError
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from pineaccess import selectors
from pineaccess.forms import ExtendAccessForm, GrantToUsersForm, TradingViewSessionForm
from pineaccess.models import AccessLog, PineScript, ScriptAccess, SyncReport, TradingViewSession
from pineaccess.services.access import (
    script_access_extend,
    script_access_grant,
    script_access_retry,
    script_access_revoke,
)
from pineaccess.services.client import OPERATOR_ERROR_CODES
from pineaccess.services.scripts import pine_script_create, pine_script_deactivate, pine_script_update
from pineaccess.services.session import tradingview_session_paste
from pineaccess.services.sync import pine_scripts_sync
from pineaccess.tradingview import TradingViewError

ACTION_TEMPLATE = "pineaccess/admin/action_form.html"


def _action_form(
    modeladmin, request: HttpRequest, queryset: QuerySet, *, form, title: str, action: str, intro: str
):
    """Render an intermediate page for an admin action with a form and the selected rows."""
    context = {
        **modeladmin.admin_site.each_context(request),
        "title": title,
        "intro": intro,
        "form": form,
        "objects": queryset,
        "action": action,
        "action_checkbox_name": ACTION_CHECKBOX_NAME,
        "opts": modeladmin.model._meta,
        "media": modeladmin.media + (form.media if form is not None else forms.Media()),
    }
    return TemplateResponse(request, ACTION_TEMPLATE, context)


# --------------------------------------------------------------------------------------------------- scripts


class SyncReportInline(admin.TabularInline):
    model = SyncReport
    fields = ["started_at", "outcome", "tradingview_count", "database_count", "drift", "actor"]
    readonly_fields = fields
    extra = 0
    max_num = 0
    can_delete = False
    show_change_link = True
    ordering = ["-started_at"]
    verbose_name_plural = "Recent sync reports"

    def get_queryset(self, request):
        return super().get_queryset(request).order_by("-started_at")

    @admin.display(description="drift")
    def drift(self, report: SyncReport) -> int:
        return report.drift_count


@admin.register(PineScript)
class PineScriptAdmin(admin.ModelAdmin):
    list_display = ["name", "pine_id", "active", "live_access", "updated_at"]
    list_filter = ["active"]
    search_fields = ["name", "pine_id", "description"]
    actions = ["grant_to_users", "sync_now", "deactivate_and_remove_all", "switch_on"]
    inlines = [SyncReportInline]

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .annotate(live_count=Count("accesses", filter=~Q(accesses__status=ScriptAccess.Status.REMOVED)))
        )

    def get_readonly_fields(self, request, obj=None):
        # Switching a script off must go through the action, which removes everyone on TradingView first.
        return ["pine_id", "active", "created_at", "updated_at"] if obj else ["created_at", "updated_at"]

    def get_actions(self, request):
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    def has_delete_permission(self, request, obj=None):
        if obj is not None and ScriptAccess.objects.filter(script=obj).exists():
            return False
        return super().has_delete_permission(request, obj)

    def save_model(self, request, obj: PineScript, form, change: bool) -> None:
        if change:
            pine_script_update(
                script=obj, requested_by=request.user, name=obj.name, description=obj.description
            )
        else:
            created = pine_script_create(
                pine_id=obj.pine_id, name=obj.name, description=obj.description, active=obj.active
            )
            obj.pk = created.pk

    @admin.display(description="live access", ordering="live_count")
    def live_access(self, script: PineScript) -> int:
        return script.live_count

    @admin.action(description="Grant to users…")
    def grant_to_users(self, request: HttpRequest, queryset: QuerySet[PineScript]):
        form = GrantToUsersForm(request.POST if "apply" in request.POST else None)
        if "apply" in request.POST and form.is_valid():
            granted = 0
            for user in form.cleaned_data["users"]:
                try:
                    granted += len(
                        script_access_grant(
                            user=user,
                            scripts=queryset,
                            duration_days=form.cleaned_data["days"],
                            requested_by=request.user,
                        )
                    )
                except ValidationError as error:
                    self.message_user(request, f"{user}: {' '.join(error.messages)}", messages.ERROR)
            days = form.cleaned_data["days"]
            self.message_user(
                request,
                f"Queued {granted} grants ({f'{days} days' if days else 'lifetime'}); they turn active once "
                "TradingView confirms.",
                messages.SUCCESS,
            )
            return None
        return _action_form(
            self,
            request,
            queryset,
            form=form,
            title="Grant scripts to users",
            action="grant_to_users",
            intro=(
                "Choose the users and how long. Existing access is extended; lifetime access stays lifetime."
            ),
        )

    @admin.action(description="Sync now with TradingView")
    def sync_now(self, request: HttpRequest, queryset: QuerySet[PineScript]) -> None:
        run = pine_scripts_sync(scripts=queryset, requested_by=request.user)
        for report in run.reports:
            level = {
                SyncReport.Outcome.CLEAN: messages.SUCCESS,
                SyncReport.Outcome.FAILED: messages.ERROR,
            }.get(report.outcome, messages.WARNING)
            text = (
                f"{report.script.name}: {report.get_outcome_display()}"
                + (f" ({report.drift_count} differences)" if report.drift_count else "")
                + (f" {report.error}" if report.error else "")
            )
            self.message_user(request, text, level)

    @admin.action(description="Deactivate and remove all access")
    def deactivate_and_remove_all(self, request: HttpRequest, queryset: QuerySet[PineScript]):
        if "apply" in request.POST:
            total = sum(
                pine_script_deactivate(script=script, requested_by=request.user) for script in queryset
            )
            self.message_user(
                request,
                f"Switched off {queryset.count()} scripts; removing {total} users' access on TradingView. "
                "The grants are deleted once TradingView confirms.",
                messages.SUCCESS,
            )
            return None
        return _action_form(
            self,
            request,
            queryset,
            form=None,
            title="Deactivate and remove all access",
            action="deactivate_and_remove_all",
            intro=(
                "These scripts will be switched off. Everyone's access is removed on TradingView (also "
                "anyone granted by hand there), then every grant is deleted so the script can start clean "
                "later."
            ),
        )

    @admin.action(description="Switch on again")
    def switch_on(self, request: HttpRequest, queryset: QuerySet[PineScript]) -> None:
        for script in queryset.filter(active=False):
            pine_script_update(script=script, requested_by=request.user, active=True)
        self.message_user(
            request, "The scripts are switched on; grant them to users again.", messages.SUCCESS
        )


# ---------------------------------------------------------------------------------------------------- access


class ExpiringSoonFilter(admin.SimpleListFilter):
    title = "expiry"
    parameter_name = "expiring"

    def lookups(self, request, model_admin):
        return [("7d", "Expiring within 7 days"), ("past", "Past its expiry"), ("lifetime", "Lifetime")]

    def queryset(self, request, queryset):
        now = timezone.now()
        if self.value() == "7d":
            return queryset.filter(
                status=ScriptAccess.Status.ACTIVE, expires_at__gt=now, expires_at__lte=now + timedelta(days=7)
            )
        if self.value() == "past":
            return queryset.filter(expires_at__lte=now).exclude(status=ScriptAccess.Status.REMOVED)
        if self.value() == "lifetime":
            return queryset.filter(expires_at__isnull=True)
        return queryset


@admin.register(ScriptAccess)
class ScriptAccessAdmin(admin.ModelAdmin):
    list_display = [
        "user",
        "script",
        "tradingview_username",
        "status",
        "expires_at",
        "granted_at",
        "short_error",
    ]
    list_filter = ["status", ExpiringSoonFilter, "script"]
    list_select_related = ["user", "script"]
    search_fields = [
        "user__username",
        "user__email",
        "tradingview_username",
        "script__name",
        "script__pine_id",
    ]
    actions = ["extend", "revoke", "retry"]
    show_full_result_count = False
    date_hierarchy = "created_at"
    readonly_fields = [
        "user",
        "script",
        "tradingview_username",
        "status",
        "expires_at",
        "granted_at",
        "removed_at",
        "last_error",
        "error_code",
        "attempts",
        "requested_by",
        "requested_by_actor",
        "claimed_until",
        "created_at",
        "updated_at",
    ]
    exclude = ["claim_token"]

    def has_add_permission(self, request):
        return False  # grants start from the script admin's "Grant to users" or the API

    def has_delete_permission(self, request, obj=None):
        return False  # revoke instead: TradingView first, then the database

    @admin.display(description="last error")
    def short_error(self, row: ScriptAccess) -> str:
        return row.last_error[:80] + ("…" if len(row.last_error) > 80 else "")

    @admin.action(description="Extend…")
    def extend(self, request: HttpRequest, queryset: QuerySet[ScriptAccess]):
        form = ExtendAccessForm(request.POST if "apply" in request.POST else None)
        if "apply" in request.POST and form.is_valid():
            days = None if form.cleaned_data["lifetime"] else form.cleaned_data["days"]
            extended, refused = 0, []
            for row in queryset:
                try:
                    script_access_extend(access=row, days=days, requested_by=request.user)
                    extended += 1
                except ValidationError as error:
                    refused.append(f"{row}: {' '.join(error.messages)}")
            self.message_user(request, f"Extended {extended} access rows.", messages.SUCCESS)
            for line in refused:
                self.message_user(request, line, messages.WARNING)
            return None
        return _action_form(
            self,
            request,
            queryset.select_related("user", "script"),
            form=form,
            title="Extend access",
            action="extend",
            intro="Days are added to each access's current expiry (or to now, if it has passed).",
        )

    @admin.action(description="Revoke (remove on TradingView)")
    def revoke(self, request: HttpRequest, queryset: QuerySet[ScriptAccess]) -> None:
        rows = [script_access_revoke(access=row, requested_by=request.user) for row in queryset]
        removing = sum(row.status == ScriptAccess.Status.REMOVING for row in rows)
        self.message_user(request, f"Removing {removing} access rows on TradingView.", messages.SUCCESS)

    @admin.action(description="Retry failed grants")
    def retry(self, request: HttpRequest, queryset: QuerySet[ScriptAccess]) -> None:
        count = sum(script_access_retry(access=row, requested_by=request.user) for row in queryset)
        self.message_user(request, f"Queued {count} failed grants again.", messages.SUCCESS)


# ----------------------------------------------------------------------------------------------- read-only


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(AccessLog)
class AccessLogAdmin(ReadOnlyAdmin):
    list_display = [
        "created_at",
        "operation",
        "outcome",
        "actor",
        "actor_user",
        "tradingview_username",
        "pine_id",
        "detail",
    ]
    list_filter = ["operation", "outcome", "actor"]
    list_select_related = ["actor_user", "target_user"]
    search_fields = [
        "tradingview_username",
        "pine_id",
        "detail",
        "actor_user__username",
        "target_user__username",
    ]
    date_hierarchy = "created_at"
    show_full_result_count = False


@admin.register(SyncReport)
class SyncReportAdmin(ReadOnlyAdmin):
    list_display = [
        "started_at",
        "script",
        "outcome",
        "tradingview_count",
        "database_count",
        "drift",
        "fix_requested",
        "actor",
    ]
    list_filter = ["outcome", "fix_requested", "script"]
    list_select_related = ["script"]
    search_fields = ["pine_id", "script__name"]
    show_full_result_count = False
    fields = [
        "script",
        "outcome",
        "started_at",
        "finished_at",
        "actor",
        "requested_by",
        "fix_requested",
        "tradingview_count",
        "database_count",
        "only_on_tradingview_list",
        "only_here_list",
        "different_expiry_list",
        "fixes_list",
        "fix_errors_list",
        "error",
    ]
    readonly_fields = fields

    @admin.display(description="drift")
    def drift(self, report: SyncReport) -> int:
        return report.drift_count

    @staticmethod
    def _lines(items, render) -> str:
        if not items:
            return "—"
        return format_html(
            "<ul class='mb-0'>{}</ul>", format_html_join("", "<li>{}</li>", ((render(i),) for i in items))
        )

    @admin.display(description="on TradingView only")
    def only_on_tradingview_list(self, report: SyncReport) -> str:
        return self._lines(
            report.only_on_tradingview,
            lambda i: f"{i['username']} ({i['expiration'] or 'lifetime'}) {i.get('note', '')}".strip(),
        )

    @admin.display(description="here only")
    def only_here_list(self, report: SyncReport) -> str:
        return self._lines(report.only_here, lambda i: f"{i['username']} ({i['expires_at'] or 'lifetime'})")

    @admin.display(description="different expiry")
    def different_expiry_list(self, report: SyncReport) -> str:
        return self._lines(
            report.different_expiry,
            lambda i: (
                f"{i['username']}: here {i['here'] or 'lifetime'}, TradingView {i['there'] or 'lifetime'}"
            ),
        )

    @admin.display(description="fixes")
    def fixes_list(self, report: SyncReport) -> str:
        return self._lines(report.fixes, str)

    @admin.display(description="fixes that failed")
    def fix_errors_list(self, report: SyncReport) -> str:
        return self._lines(report.fix_errors, str)


# --------------------------------------------------------------------------------------------------- session


@admin.register(TradingViewSession)
class TradingViewSessionAdmin(admin.ModelAdmin):
    """One page: the session's state and a form to paste cookies from a logged-in browser."""

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return request.user.is_active and request.user.is_superuser

    def has_view_permission(self, request, obj=None):
        return self.has_change_permission(request, obj)

    def has_module_permission(self, request):
        return self.has_change_permission(request)

    def changelist_view(self, request: HttpRequest, extra_context=None) -> HttpResponse:
        if not self.has_change_permission(request):
            from django.core.exceptions import PermissionDenied

            raise PermissionDenied
        form = TradingViewSessionForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            try:
                retried = tradingview_session_paste(
                    sessionid=form.cleaned_data["sessionid"],
                    sessionid_sign=form.cleaned_data["sessionid_sign"] or None,
                    requested_by=request.user,
                )
            except (ValueError, TradingViewError) as error:
                form.add_error(None, str(error))
            else:
                self.message_user(
                    request,
                    "TradingView accepted the session; it is saved (encrypted) and used from now on."
                    + (f" {retried} failed grants were queued again." if retried else ""),
                    messages.SUCCESS,
                )
                return HttpResponseRedirect(reverse("admin:pineaccess_tradingviewsession_changelist"))
        context = {
            **self.admin_site.each_context(request),
            "title": "TradingView session",
            "opts": self.model._meta,
            "form": form,
            "session": TradingViewSession.objects.filter(pk=TradingViewSession.SINGLETON_ID).first(),
            "recent_logins": AccessLog.objects.filter(operation=AccessLog.Operation.LOGIN)[:10],
            "failed_for_session": ScriptAccess.objects.filter(
                status=ScriptAccess.Status.FAILED, error_code__in=OPERATOR_ERROR_CODES
            ).count(),
            "expiring_soon": selectors.script_accesses_expiring_within(days=7).count(),
        }
        return TemplateResponse(request, "pineaccess/admin/session.html", context)

    def change_view(self, request, object_id, form_url="", extra_context=None):
        return HttpResponseRedirect(reverse("admin:pineaccess_tradingviewsession_changelist"))
