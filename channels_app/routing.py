from django.urls import path

from .consumers import WebchatConsumer

websocket_urlpatterns = [path("ws/chat/", WebchatConsumer.as_asgi())]
