"""Pages and API routes of the execution side: signals, orders, positions, prices, kill switches."""

from django.urls import include, path
from rest_framework.routers import SimpleRouter

from trading import execution_api, execution_views

router = SimpleRouter()
router.register("signals", execution_api.SignalViewSet, basename="api-signal")
router.register("orders", execution_api.OrderViewSet, basename="api-order")
router.register("positions", execution_api.PositionViewSet, basename="api-position")

urlpatterns = [
    path("signals/", execution_views.signal_list, name="signal-list"),
    path("signals/<int:pk>", execution_views.signal_detail, name="signal-detail"),
    path("orders/", execution_views.order_list, name="order-list"),
    path("positions/", execution_views.position_list, name="position-list"),
    path("dashboard/live", execution_views.dashboard_live, name="dashboard-live"),
    path("killswitch", execution_views.killswitch_toggle, name="killswitch-toggle"),
    path("api/prices/", execution_api.PriceView.as_view(), name="api-prices"),
    path("api/", include(router.urls)),
]
