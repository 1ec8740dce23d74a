from django.contrib.admin.views.decorators import staff_member_required
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect, render
from django.utils import translation
from django.views.decorators.http import require_POST

from . import selectors, services
from .models import Category


def index(request: HttpRequest) -> HttpResponse:
    q = request.GET.get("q", "")
    language = translation.get_language()
    results = selectors.articles_in_language(selectors.articles_search(q, limit=30), language=language) if q else None
    categories = Category.objects.prefetch_related("articles")
    return render(
        request,
        "kb/index.html",
        {"q": q, "results": results, "categories": categories, "articles": selectors.published()},
    )


def article(request: HttpRequest, slug: str) -> HttpResponse:
    item = selectors.published().filter(slug=slug).first()
    if item is None:
        raise Http404
    return render(
        request,
        "kb/article.html",
        {
            "article": item,
            "related": selectors.related_articles(item),
            "voted": request.GET.get("voted"),
            "other_languages": selectors.article_other_languages(item),
        },
    )


@require_POST
def vote(request: HttpRequest, slug: str) -> HttpResponse:
    item = selectors.published().filter(slug=slug).first()
    if item is None:
        raise Http404
    if not request.session.session_key:
        request.session.save()
    services.article_vote(
        article=item, session_key=request.session.session_key, helpful=request.POST.get("helpful") == "yes"
    )
    return redirect(f"/kb/{slug}/?voted=1")


def suggest(request: HttpRequest) -> HttpResponse:
    """htmx partial for the portal's new-request form: articles matching what is typed."""
    text = f"{request.GET.get('subject', '')} {request.GET.get('body', '')}"
    return render(
        request,
        "kb/_suggestions.html",
        {
            "articles": selectors.articles_in_language(
                selectors.articles_search(text, limit=5, any_word=True), language=translation.get_language()
            )
        },
    )


@require_POST
def deflected(request: HttpRequest, slug: str) -> HttpResponse:
    """sendBeacon from the portal: the visitor read a suggestion and left without submitting."""
    from portal.views import current_customer

    item = selectors.published().filter(slug=slug).first()
    if item is None:
        raise Http404
    services.deflection_record(article=item, customer=current_customer(request), query=request.POST.get("q", ""))
    return HttpResponse(status=204)


@staff_member_required
def agent_search(request: HttpRequest) -> JsonResponse:
    """For the desk: find an article to link in a reply."""
    base = request.build_absolute_uri("/kb/")
    return JsonResponse(
        {
            "results": [
                {"title": a.title, "url": f"{base}{a.slug}/", "language": a.language}
                for a in selectors.articles_in_language(
                    selectors.articles_search(request.GET.get("q", "")), language=request.GET.get("lang", "")
                )
            ]
        }
    )
