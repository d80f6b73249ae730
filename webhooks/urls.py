"""The TradingView webhook."""

from django.urls import path

from webhooks import views

urlpatterns = [
    # Any text after /webhook/: a malformed token is simply unknown (404), never a routing error.
    path("webhook/<path:token>", views.webhook, name="webhook"),
]
