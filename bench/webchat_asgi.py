"""The benchmark's server: cxdesk's ASGI application plus a bare Django view at
/bench/bare/ served by the same process, for the ratio convention (issue 12)."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cxdesk.settings")

from django.core.handlers.asgi import ASGIHandler  # noqa: E402
from django.http import HttpResponse  # noqa: E402
from django.urls import path  # noqa: E402

from cxdesk.asgi import application as cxdesk_application  # noqa: E402


def bare(request):
    return HttpResponse("ok", content_type="text/plain")


urlpatterns = [path("bench/bare/", bare)]


class BareHandler(ASGIHandler):
    def get_response_async(self, request):
        request.urlconf = __name__
        return super().get_response_async(request)


bare_app = BareHandler()


async def application(scope, receive, send):
    if scope["type"] == "http" and scope["path"] == "/bench/bare/":
        return await bare_app(scope, receive, send)
    return await cxdesk_application(scope, receive, send)
