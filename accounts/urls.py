from django.urls import path

from accounts import api, views

urlpatterns = [
    path("", views.home, name="home"),
    path("validate-key", views.validate_key, name="validate-key"),
    path("register", views.register, name="register"),
    path("login", views.login_view, name="login"),
    path("logout", views.logout_view, name="logout"),
    path("profile", views.profile, name="profile"),
    path(
        "profile/tradingview-username",
        views.profile_tradingview_username,
        name="profile-tradingview-username",
    ),
    path("profile/api-token", views.profile_api_token, name="profile-api-token"),
    path("api/auth/token/", api.token_view, name="api-token"),
    path("api/access-keys/", api.access_key_list_view, name="api-access-key-list"),
    path("api/access-keys/<int:pk>/", api.access_key_detail_view, name="api-access-key-detail"),
    path("api/access-keys/<int:pk>/revoke/", api.access_key_revoke_view, name="api-access-key-revoke"),
]
