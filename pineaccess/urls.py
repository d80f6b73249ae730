from django.urls import include, path
from rest_framework.routers import SimpleRouter

from pineaccess import api, views

app_name = "pineaccess"

router = SimpleRouter()
router.register("pine-scripts", api.PineScriptViewSet, basename="pine-script")
router.register("script-access", api.ScriptAccessViewSet, basename="script-access")

urlpatterns = [
    path("manage", views.manage, name="manage"),
    path("api/", include(router.urls)),
    path(
        "api/tradingview/validate-username",
        api.ValidateUsernameView.as_view(),
        name="validate-username",
    ),
]
