"""Root URL configuration: each app brings its own pages and API routes."""

from django.contrib import admin
from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView

from justtrades.health import healthz

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("admin/", admin.site.urls),
    path("api/schema/", SpectacularAPIView.as_view(), name="api-schema"),
    path("api/docs/", SpectacularSwaggerView.as_view(url_name="api-schema"), name="api-docs"),
    path("", include("webhooks.urls")),
    path("", include("accounts.urls")),
    path("", include("pineaccess.urls")),
    path("", include("trading.urls")),
]

admin.site.site_header = "JustTrades operator console"
admin.site.site_title = "JustTrades"
admin.site.index_title = "Operations"
