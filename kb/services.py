from __future__ import annotations

import markdown
from django.db import IntegrityError, transaction
from django.db.models import F

from cxdesk.sanitize import sanitize_html

from .models import Article, ArticleVote, Deflection


@transaction.atomic
def article_save(*, article: Article) -> Article:
    """Render the Markdown, sanitise it, save."""
    article.body_html = sanitize_html(markdown.markdown(article.body_markdown, extensions=["extra", "sane_lists"]))
    article.save()
    return article


def article_vote(*, article: Article, session_key: str, helpful: bool) -> bool:
    """Count a vote once per session; returns whether it counted."""
    try:
        with transaction.atomic():
            ArticleVote.objects.create(article=article, session_key=session_key, helpful=helpful)
            field = "helpful_yes" if helpful else "helpful_no"
            Article.objects.filter(pk=article.pk).update(**{field: F(field) + 1})
    except IntegrityError:
        return False
    return True


def deflection_record(*, article: Article, customer=None, query: str = "") -> Deflection:
    return Deflection.objects.create(article=article, customer=customer, query=query[:500])
