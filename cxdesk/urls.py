from django.conf import settings
from django.contrib import admin
from django.urls import include, path
from django.views.generic import RedirectView

from surveys.views import answer as survey_answer_view

urlpatterns = [
    path("", RedirectView.as_view(url="/desk/", permanent=False)),
    path("admin/", admin.site.urls),
    path("api/v1/", include("cxdesk.api_urls")),
    path("accounts/", include("django.contrib.auth.urls")),
    path("hooks/anymail/", include("anymail.urls")),
    path("hooks/", include("channels_app.urls")),
    path("chat/", include("channels_app.webchat_urls")),
    path("portal/", include("customers.portal.urls")),
    path("kb/", include("kb.urls")),
    path("survey/<str:token>/", survey_answer_view, name="survey-answer"),
    path("desk/reports/", include("sla.urls")),
    path("desk/", include("tickets.urls")),
]


if settings.DEBUG or settings.CXDESK_DEMO:
    from channels_app.webchat_views import demo_shop

    urlpatterns += [
        path("demo/shop/", demo_shop, name="demo-shop"),
        path("demo/shop/<slug:page>/", demo_shop, name="demo-shop-page"),
    ]
