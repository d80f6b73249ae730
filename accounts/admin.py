from django.contrib import admin
from django.contrib.auth.admin import UserAdmin

from accounts.models import User


@admin.register(User)
class JustTradesUserAdmin(UserAdmin):
    list_display = ("username", "email", "tradingview_username", "approval_status", "is_staff", "date_joined")
    list_filter = ("approval_status", "is_staff", "is_active")
    search_fields = ("username", "email", "tradingview_username")
    fieldsets = (
        *UserAdmin.fieldsets,
        (
            "JustTrades",
            {"fields": ("approval_status", "tradingview_username", "tradingview_verified", "time_zone")},
        ),
    )
