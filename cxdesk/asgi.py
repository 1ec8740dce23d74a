"""ASGI entry point: HTTP to Django, websockets (/ws/…) to Channels consumers."""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cxdesk.settings")
django_asgi_app = get_asgi_application()

from channels.auth import AuthMiddlewareStack  # noqa: E402
from channels.routing import ProtocolTypeRouter, URLRouter  # noqa: E402
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from channels_app.routing import websocket_urlpatterns as chat_urlpatterns  # noqa: E402
from cxdesk.metrics import WebsocketCounter  # noqa: E402
from tickets.routing import websocket_urlpatterns  # noqa: E402

# /ws/chat/ serves the widget on foreign sites: it checks Origin against the inbox's
# allowed_origins itself and uses no session. Everything else is the desk's.
desk_websockets = AllowedHostsOriginValidator(AuthMiddlewareStack(URLRouter(websocket_urlpatterns)))
chat_websockets = URLRouter(chat_urlpatterns)


async def websockets(scope, receive, send):
    app = chat_websockets if scope["path"].startswith("/ws/chat/") else desk_websockets
    return await app(scope, receive, send)


application = ProtocolTypeRouter({"http": django_asgi_app, "websocket": WebsocketCounter(websockets)})
