"""Mounted under /desk/ (before the workspace's own routes)."""

from django.urls import include, path

from . import views

urlpatterns = [
    path("sign-in/", views.sign_in, name="desk-sign-in"),
    path("sign-out/", views.sign_out, name="logout"),
    path("sign-in/reset/", views.PasswordResetView.as_view(), name="password_reset"),
    path("sign-in/reset/sent/", views.PasswordResetDoneView.as_view(), name="password_reset_done"),
    path("sign-in/reset/done/", views.PasswordResetCompleteView.as_view(), name="password_reset_complete"),
    path(
        "sign-in/reset/<uidb64>/<token>/",
        views.PasswordResetConfirmView.as_view(),
        name="password_reset_confirm",
    ),
    path("security/", views.security, name="desk-security"),
    path("language/", views.desk_language, name="desk-language"),
    path("staff/", views.staff, name="desk-staff"),
    path("sso/", include("accounts.sso_urls")),
]
