"""The benchmarks' WSGI server app: cxdesk's WSGI application plus a bare Django view at
/bench/bare/ served by the same gunicorn workers, through the same middleware, for the
ratio convention of issue 12 (the ASGI twin is bench/webchat_asgi.py)."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cxdesk.settings")

from django.core.handlers.wsgi import WSGIHandler  # noqa: E402
from django.http import HttpResponse  # noqa: E402
from django.urls import path  # noqa: E402

from cxdesk.wsgi import application as cxdesk_application  # noqa: E402


def bare(request):
    return HttpResponse("ok", content_type="text/plain")


urlpatterns = [path("bench/bare/", bare)]


class BareHandler(WSGIHandler):
    def get_response(self, request):
        request.urlconf = __name__
        return super().get_response(request)


bare_app = BareHandler()


def application(environ, start_response):
    if environ.get("PATH_INFO") == "/bench/bare/":
        return bare_app(environ, start_response)
    return cxdesk_application(environ, start_response)
