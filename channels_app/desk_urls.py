from django.urls import path

from . import views

urlpatterns = [
    path("", views.dead_letters, name="desk-dead-letters"),
    path("<int:pk>/raw/", views.dead_letter_raw, name="desk-dead-letter-raw"),
    path("<int:pk>/retry/", views.dead_letter_retry, name="desk-dead-letter-retry"),
]
