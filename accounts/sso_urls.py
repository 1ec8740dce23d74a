"""Mounted at /desk/sso/: start (to the provider) and callback (back from it)."""

from django.urls import path

from .oidc import AuthenticateView, CallbackView

urlpatterns = [
    path("start/", AuthenticateView.as_view(), name="oidc_authentication_init"),
    path("callback/", CallbackView.as_view(), name="oidc_authentication_callback"),
]
