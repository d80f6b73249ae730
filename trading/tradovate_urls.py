"""Routes of the broker connection pages: Tradovate OAuth, the connection test and the sub-account choice."""

from django.urls import path

from trading import tradovate_views

urlpatterns = [
    path("connect-tradovate", tradovate_views.tradovate_connect, name="tradovate-connect"),
    path("oauth/callback", tradovate_views.tradovate_oauth_callback, name="tradovate-oauth-callback"),
    path("broker-accounts/<int:pk>/test", tradovate_views.broker_account_test, name="broker-account-test"),
    path(
        "broker-accounts/<int:pk>/subaccounts",
        tradovate_views.broker_account_subaccounts,
        name="broker-account-subaccounts",
    ),
]
