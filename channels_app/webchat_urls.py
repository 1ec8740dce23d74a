from django.urls import path

from . import webchat_views

urlpatterns = [
    path("<int:inbox_id>/config/", webchat_views.config, name="webchat-config"),
    path("<int:inbox_id>/frames/", webchat_views.frames, name="webchat-frames"),
    path("<int:inbox_id>/poll/", webchat_views.poll, name="webchat-poll"),
    path("<int:inbox_id>/upload/", webchat_views.upload, name="webchat-upload"),
    path("<int:inbox_id>/file/<str:token>/", webchat_views.attachment_file, name="webchat-file"),
]
