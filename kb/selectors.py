"""Published articles for anyone; full-text search on PostgreSQL (GIN index), LIKE elsewhere."""

from __future__ import annotations

from django.db import connection
from django.db.models import Q, QuerySet

from .models import Article


def published() -> QuerySet[Article]:
    return Article.objects.filter(status=Article.Status.PUBLISHED).select_related("category")


def articles_search(query: str, *, limit: int = 10, any_word: bool = False) -> list[Article]:
    """All words must match (a search box), or, with `any_word`, any word of three letters
    or more (suggestions while a customer describes their problem), best match first."""
    query = (query or "").strip()
    words = [w.strip(".,;:!?()\"'") for w in query.split()]
    words = [w for w in words if len(w) > (2 if any_word else 1)]
    if not words:
        return []
    qs = published()
    if connection.vendor == "postgresql":
        from django.contrib.postgres.search import SearchQuery, SearchRank, SearchVector

        vector = SearchVector("title", "body_markdown", config="simple")
        if any_word:
            q = SearchQuery(words[0], config="simple")
            for w in words[1:]:
                q |= SearchQuery(w, config="simple")
        else:
            q = SearchQuery(query, config="simple", search_type="websearch")
        return list(qs.annotate(v=vector, rank=SearchRank(vector, q)).filter(v=q).order_by("-rank", "title")[:limit])
    cond = Q()
    for w in words:
        term = Q(title__icontains=w) | Q(body_markdown__icontains=w)
        cond = (cond | term) if any_word else (cond & term)
    return list(qs.filter(cond)[:limit])


def related_articles(article: Article, *, limit: int = 5) -> list[Article]:
    qs = published().exclude(pk=article.pk)
    same = list(qs.filter(category=article.category_id)[:limit]) if article.category_id else []
    if len(same) < limit:
        more = articles_search(article.title, limit=limit + 1)
        same += [a for a in more if a.pk != article.pk and a not in same][: limit - len(same)]
    return same


def articles_in_language(articles: list[Article], *, language: str) -> list[Article]:
    """Each found article as its published translation in `language` when there is one
    (the customer's language, for a link in a reply); one article per original."""
    if not language:
        return articles
    from cxdesk.i18n import pick_translation

    roots = {(a.translation_of_id or a.pk) for a in articles}
    family = {}
    for a in published().filter(Q(pk__in=roots) | Q(translation_of__in=roots)):
        family.setdefault(a.translation_of_id or a.pk, []).append(a)
    out, seen = [], set()
    for a in articles:
        root_id = a.translation_of_id or a.pk
        if root_id in seen:
            continue
        seen.add(root_id)
        members = family.get(root_id, [a])
        root = next((m for m in members if m.pk == root_id), a)
        out.append(pick_translation(root, language, [m for m in members if m.pk != root.pk]))
    return out


def article_other_languages(article: Article) -> list[tuple[Article, str]]:
    """The same article in the other languages it is published in (the original and its
    translations), each with its language's own name, for the article page's links."""
    from cxdesk.i18n import language_name

    root_id = article.translation_of_id or article.pk
    others = published().filter(Q(pk=root_id) | Q(translation_of_id=root_id)).exclude(pk=article.pk)
    return [(a, language_name(a.language)) for a in others.order_by("language", "pk")]
