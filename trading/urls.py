"""Pages and API routes of the trading domain."""

from django.urls import include, path
from rest_framework.routers import SimpleRouter

from trading import api, views

router = SimpleRouter()
router.register("broker-accounts", api.BrokerAccountViewSet, basename="api-broker-account")
router.register("recorders", api.RecorderViewSet, basename="api-recorder")
router.register("traders", api.TraderViewSet, basename="api-trader")

urlpatterns = [
    path("dashboard", views.dashboard, name="dashboard"),
    path("recorders/", views.recorder_list, name="recorder-list"),
    path("recorders/new", views.recorder_create, name="recorder-create"),
    path("recorders/<int:pk>", views.recorder_detail, name="recorder-detail"),
    path("recorders/<int:pk>/token", views.recorder_regenerate_token, name="recorder-regenerate-token"),
    path("recorders/<int:pk>/reset", views.recorder_reset_performance, name="recorder-reset"),
    path("recorders/<int:pk>/delete", views.recorder_delete, name="recorder-delete"),
    path("traders/", views.trader_list, name="trader-list"),
    path("traders/new", views.trader_create, name="trader-create"),
    path("traders/<int:pk>", views.trader_detail, name="trader-detail"),
    path("traders/<int:pk>/delete", views.trader_delete, name="trader-delete"),
    path("broker-accounts/", views.broker_account_list, name="broker-account-list"),
    path("broker-accounts/new", views.broker_account_create, name="broker-account-create"),
    path("broker-accounts/<int:pk>", views.broker_account_detail, name="broker-account-detail"),
    path("broker-accounts/<int:pk>/delete", views.broker_account_delete, name="broker-account-delete"),
    path("api/", include(router.urls)),
    path("", include("trading.execution_urls")),
    path("", include("trading.tradovate_urls")),
]
