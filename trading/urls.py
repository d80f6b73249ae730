"""Pages and API routes of the trading domain."""

from django.urls import include, path
from rest_framework.routers import SimpleRouter

from trading import api
from trading.views import broker_accounts, dashboard, killswitches, orders, recorders, signals, traders

router = SimpleRouter()
router.register("broker-accounts", api.BrokerAccountViewSet, basename="api-broker-account")
router.register("recorders", api.RecorderViewSet, basename="api-recorder")
router.register("traders", api.TraderViewSet, basename="api-trader")
router.register("signals", api.SignalViewSet, basename="api-signal")
router.register("orders", api.OrderViewSet, basename="api-order")
router.register("positions", api.PositionViewSet, basename="api-position")

urlpatterns = [
    path("dashboard", dashboard.dashboard, name="dashboard"),
    path("dashboard/live", dashboard.dashboard_live, name="dashboard-live"),
    path("recorders/", recorders.recorder_list, name="recorder-list"),
    path("recorders/new", recorders.recorder_create, name="recorder-create"),
    path("recorders/<int:pk>", recorders.recorder_detail, name="recorder-detail"),
    path("recorders/<int:pk>/token", recorders.recorder_regenerate_token, name="recorder-regenerate-token"),
    path("recorders/<int:pk>/reset", recorders.recorder_reset_performance, name="recorder-reset"),
    path("recorders/<int:pk>/delete", recorders.recorder_delete, name="recorder-delete"),
    path("traders/", traders.trader_list, name="trader-list"),
    path("traders/new", traders.trader_create, name="trader-create"),
    path("traders/<int:pk>", traders.trader_detail, name="trader-detail"),
    path("traders/<int:pk>/delete", traders.trader_delete, name="trader-delete"),
    path("broker-accounts/", broker_accounts.broker_account_list, name="broker-account-list"),
    path("broker-accounts/new", broker_accounts.broker_account_create, name="broker-account-create"),
    path("broker-accounts/<int:pk>", broker_accounts.broker_account_detail, name="broker-account-detail"),
    path(
        "broker-accounts/<int:pk>/delete", broker_accounts.broker_account_delete, name="broker-account-delete"
    ),
    path("broker-accounts/<int:pk>/test", broker_accounts.broker_account_test, name="broker-account-test"),
    path(
        "broker-accounts/<int:pk>/subaccounts",
        broker_accounts.broker_account_subaccounts,
        name="broker-account-subaccounts",
    ),
    path("connect-tradovate", broker_accounts.tradovate_connect, name="tradovate-connect"),
    path("oauth/callback", broker_accounts.tradovate_oauth_callback, name="tradovate-oauth-callback"),
    path("signals/", signals.signal_list, name="signal-list"),
    path("signals/<int:pk>", signals.signal_detail, name="signal-detail"),
    path("orders/", orders.order_list, name="order-list"),
    path("positions/", orders.position_list, name="position-list"),
    path("killswitch", killswitches.killswitch_toggle, name="killswitch-toggle"),
    path("api/prices/", api.PriceView.as_view(), name="api-prices"),
    path("api/", include(router.urls)),
]
