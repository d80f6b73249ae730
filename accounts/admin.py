"""Operator console for users (approval), access keys (issue, revoke) and the approval log."""

from __future__ import annotations

from django import forms
from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin
from django.contrib.auth.forms import UserChangeForm
from django.core.exceptions import PermissionDenied, ValidationError
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils.html import format_html

from accounts import selectors, services
from accounts.models import AccessKey, ApprovalLog, User
from pineaccess.models import PineScript


class StaffUserChangeForm(UserChangeForm):
    """The admin's user form, which keeps the TradingView username while script access depends on it."""

    class Meta(UserChangeForm.Meta):
        model = User

    def clean_tradingview_username(self) -> str | None:
        value = (self.cleaned_data.get("tradingview_username") or "").strip() or None
        before = self.instance.tradingview_username if self.instance.pk else None
        if self.instance.pk and value != before and selectors.user_has_live_script_access(user=self.instance):
            raise ValidationError(
                "The TradingView username cannot change while script access granted to it is pending, "
                "active, failed or being removed. Remove the access first (Script accesses), then change it."
            )
        return value


class RejectForm(forms.Form):
    """Why the selected accounts are rejected."""

    reason = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 3, "cols": 60}),
        max_length=1000,
        help_text="Kept in the approval log; not shown to the user.",
    )


class ApprovalLogInline(admin.TabularInline):
    model = ApprovalLog
    fk_name = "user"
    extra = 0
    can_delete = False
    fields = ("created_at", "decision", "decided_by_label", "reason")
    readonly_fields = fields
    ordering = ("-created_at",)
    verbose_name_plural = "approval log"

    def has_add_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def get_queryset(self, request: HttpRequest) -> QuerySet[ApprovalLog]:
        return super().get_queryset(request).select_related("decided_by")

    @admin.display(description="decided by")
    def decided_by_label(self, log: ApprovalLog) -> str:
        return log.decided_by_label


@admin.register(User)
class JustTradesUserAdmin(UserAdmin):
    form = StaffUserChangeForm
    list_display = (
        "username",
        "email",
        "tradingview_username",
        "approval_status",
        "is_active",
        "is_staff",
        "date_joined",
    )
    list_filter = ("approval_status", "is_staff", "is_active", "tradingview_verified")
    search_fields = ("username", "email", "tradingview_username")
    ordering = ("-date_joined",)
    readonly_fields = ("approval_status",)
    inlines = [ApprovalLogInline]
    actions = ["approve_users", "reject_users"]
    fieldsets = (
        *UserAdmin.fieldsets,
        (
            "JustTrades",
            {"fields": ("approval_status", "tradingview_username", "tradingview_verified", "time_zone")},
        ),
    )

    @admin.action(description="Approve selected users", permissions=["change"])
    def approve_users(self, request: HttpRequest, queryset: QuerySet[User]) -> None:
        # Counted first: under the "pending" filter the queryset no longer matches once approved.
        selected = queryset.count()
        approved = services.users_approve(
            users=queryset.exclude(approval_status=User.ApprovalStatus.APPROVED), approved_by=request.user
        )
        skipped = selected - approved
        self.message_user(
            request,
            f"Approved {approved} user{'s' if approved != 1 else ''}"
            + (f"; {skipped} already approved." if skipped else "."),
            messages.SUCCESS,
        )

    @admin.action(description="Reject selected pending users…", permissions=["change"])
    def reject_users(self, request: HttpRequest, queryset: QuerySet[User]) -> HttpResponse | None:
        pending = queryset.filter(approval_status=User.ApprovalStatus.PENDING)
        if not pending.exists():
            self.message_user(
                request, "None of the selected users is pending; nothing was rejected.", messages.WARNING
            )
            return None
        form = RejectForm(request.POST if "apply" in request.POST else None)
        if form.is_valid():
            rejected = services.users_reject(
                users=pending, rejected_by=request.user, reason=form.cleaned_data["reason"]
            )
            self.message_user(
                request,
                f"Rejected and deactivated {rejected} user{'s' if rejected != 1 else ''}.",
                messages.SUCCESS,
            )
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": "Reject users",
            "opts": self.model._meta,
            "form": form,
            "users": pending,
            "selected": queryset.values_list("pk", flat=True),
            "action_checkbox_name": admin.helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "accounts/admin/reject_users.html", context)


@admin.register(ApprovalLog)
class ApprovalLogAdmin(admin.ModelAdmin):
    list_display = ("created_at", "user", "decision", "decided_by_label", "reason")
    list_filter = ("decision",)
    list_select_related = ("user", "decided_by")
    search_fields = ("user__username", "decided_by__username", "reason")
    date_hierarchy = "created_at"
    show_full_result_count = False

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    @admin.display(description="decided by")
    def decided_by_label(self, log: ApprovalLog) -> str:
        return log.decided_by_label


class AccessKeyStateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request: HttpRequest, model_admin: admin.ModelAdmin) -> list[tuple[str, str]]:
        return AccessKey.State.choices

    def queryset(self, request: HttpRequest, queryset: QuerySet[AccessKey]) -> QuerySet[AccessKey]:
        if self.value() in AccessKey.State.values:
            return queryset.in_state(self.value())
        return queryset


class AccessKeyBatchForm(forms.Form):
    """What a batch of new keys grants."""

    count = forms.IntegerField(min_value=1, max_value=services.MAX_KEYS_PER_BATCH, initial=1)
    scripts = forms.ModelMultipleChoiceField(
        queryset=PineScript.objects.filter(active=True),
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="None selected: the default scripts (DEFAULT_PINE_IDS).",
    )
    access_days = forms.IntegerField(
        label="Access duration (days)",
        min_value=1,
        max_value=services.MAX_ACCESS_DAYS,
        required=False,
        help_text="Empty for lifetime access.",
    )
    valid_until = forms.DateTimeField(
        required=False,
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        help_text="Optional: the key cannot be redeemed after this time.",
    )
    note = forms.CharField(max_length=200, required=False, help_text="For staff: who the keys are for.")
    auto_approve = forms.BooleanField(
        required=False, initial=True, help_text="Redeeming approves the account at once."
    )


@admin.register(AccessKey)
class AccessKeyAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "state_label",
        "note",
        "scripts_label",
        "duration",
        "auto_approve",
        "valid_until",
        "redeemed_by",
        "redeemed_at",
        "created_by",
        "created_at",
    )
    list_filter = (AccessKeyStateFilter, "auto_approve", "scripts")
    list_select_related = ("redeemed_by", "created_by")
    search_fields = ("note", "redeemed_by__username", "redeemed_by__tradingview_username")
    date_hierarchy = "created_at"
    show_full_result_count = False
    actions = ["revoke_keys"]
    fields = (
        "state_label",
        "note",
        "valid_until",
        "scripts_label",
        "duration",
        "auto_approve",
        "created_by",
        "created_at",
        "redeemed_by",
        "redeemed_at",
        "revoked_by",
        "revoked_at",
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet[AccessKey]:
        return super().get_queryset(request).prefetch_related("scripts")

    def get_readonly_fields(self, request: HttpRequest, obj: AccessKey | None = None) -> list[str]:
        editable = {"note"} | (
            {"valid_until"} if obj is not None and obj.state == AccessKey.State.UNUSED else set()
        )
        return [field for field in self.fields if field not in editable]

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        # Keys are evidence of who got in and how; revoke instead.
        return False

    @admin.display(description="state")
    def state_label(self, access_key: AccessKey) -> str:
        colours = {"unused": "#2e7d32", "redeemed": "#1565c0", "revoked": "#c62828", "expired": "#757575"}
        return format_html(
            '<strong style="color:{}">{}</strong>', colours[access_key.state], access_key.state
        )

    @admin.display(description="scripts")
    def scripts_label(self, access_key: AccessKey) -> str:
        names = [script.name for script in access_key.scripts.all()]
        return ", ".join(names) if names else "default scripts"

    @admin.display(description="access")
    def duration(self, access_key: AccessKey) -> str:
        return access_key.duration_label

    @admin.action(description="Revoke selected unused keys", permissions=["change"])
    def revoke_keys(self, request: HttpRequest, queryset: QuerySet[AccessKey]) -> None:
        revoked = services.access_keys_revoke(access_keys=queryset, revoked_by=request.user)
        skipped = len(queryset) - revoked
        self.message_user(
            request,
            f"Revoked {revoked} key{'s' if revoked != 1 else ''}"
            + (f"; {skipped} already redeemed or revoked were left as they were." if skipped else "."),
            messages.SUCCESS if revoked else messages.WARNING,
        )

    def add_view(
        self, request: HttpRequest, form_url: str = "", extra_context: dict | None = None
    ) -> HttpResponse:
        """Adding keys means creating a batch; the raw keys are shown on the answer page, only there."""
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = AccessKeyBatchForm(request.POST or None)
        context = {**self.admin_site.each_context(request), "opts": self.model._meta, "form": form}
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            try:
                issued = services.access_keys_create(
                    count=data["count"],
                    scripts=list(data["scripts"]),
                    access_days=data["access_days"],
                    valid_until=data["valid_until"],
                    note=data["note"],
                    auto_approve=data["auto_approve"],
                    created_by=request.user,
                )
            except ValidationError as error:
                form.add_error(None, error)
            else:
                context.update(
                    title=f"Created {len(issued)} access key{'s' if len(issued) != 1 else ''}",
                    issued=issued,
                    scripts=list(data["scripts"]),
                    data=data,
                )
                response = TemplateResponse(request, "accounts/admin/accesskeys_created.html", context)
                # The raw keys exist only in this page: no cache may keep a copy.
                response["Cache-Control"] = "no-store"
                return response
        context["title"] = "Create access keys"
        return TemplateResponse(request, "accounts/admin/accesskeys_create.html", context)
