from django.urls import path

from . import views

urlpatterns = [
    path("", views.index, name="kb-index"),
    path("suggest/", views.suggest, name="kb-suggest"),
    path("api/search/", views.agent_search, name="kb-agent-search"),
    path("<slug:slug>/", views.article, name="kb-article"),
    path("<slug:slug>/vote/", views.vote, name="kb-vote"),
    path("<slug:slug>/deflected/", views.deflected, name="kb-deflected"),
]
