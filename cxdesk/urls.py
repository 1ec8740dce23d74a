from django.conf import settings
from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from accounts import views as accounts_views
from channels_app import esp_webhooks
from cxdesk.health import healthz, readyz
from cxdesk.metrics import metrics
from surveys.views import answer as survey_answer_view

urlpatterns = [
    path("healthz", healthz, name="healthz"),
    path("readyz", readyz, name="readyz"),
    path("metrics", metrics, name="metrics"),
    path("", accounts_views.home, name="home"),
    # Staff sign in on the desk's page (throttled, two-factor, SSO) — the admin's too.
    path("admin/login/", RedirectView.as_view(pattern_name="desk-sign-in", query_string=True)),
    path("admin/", admin.site.urls),
    path("api/v1/", include("cxdesk.api_urls")),
    path("accounts/login/", RedirectView.as_view(pattern_name="desk-sign-in", query_string=True)),
    path("accounts/logout/", accounts_views.sign_out),
    path("hooks/anymail/", include(esp_webhooks.urlpatterns())),
    path("hooks/", include("channels_app.urls")),
    path("chat/", include("channels_app.webchat_urls")),
    path("portal/", include("portal.urls")),
    path("kb/", include("kb.urls")),
    path("survey/<str:token>/", survey_answer_view, name="survey-answer"),
    path("desk/reports/", include("sla.urls")),
    path("desk/", include("accounts.urls")),
    path("desk/dead-letters/", include("channels_app.desk_urls")),
    path("desk/audit/", include("audit.urls")),
    path("desk/", include("tickets.urls")),
]


if settings.DEBUG or settings.CXDESK_DEMO:
    from channels_app.webchat_views import demo_shop

    urlpatterns += [
        path("demo/shop/", demo_shop, name="demo-shop"),
        path("demo/shop/<slug:page>/", demo_shop, name="demo-shop-page"),
    ]
