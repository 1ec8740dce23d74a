from django.db import models
from django.utils.translation import gettext_lazy as _


class Category(models.Model):
    name = models.CharField(max_length=100)
    slug = models.SlugField(unique=True)
    position = models.PositiveIntegerField(default=0)

    class Meta:
        ordering = ["position", "name"]
        verbose_name_plural = "categories"

    def __str__(self) -> str:
        return self.name


class Article(models.Model):
    class Status(models.TextChoices):
        DRAFT = "draft", _("Draft")
        PUBLISHED = "published", _("Published")

    title = models.CharField(max_length=200)
    slug = models.SlugField(max_length=200, unique=True)
    category = models.ForeignKey(Category, null=True, blank=True, on_delete=models.SET_NULL, related_name="articles")
    body_markdown = models.TextField()
    body_html = models.TextField(blank=True, editable=False, help_text="Rendered from Markdown and sanitised.")
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.DRAFT)
    language = models.CharField(max_length=8, default="en")
    # A translation points at the original article; the desk links the customer's language.
    translation_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="translations"
    )
    helpful_yes = models.PositiveIntegerField(default=0)
    helpful_no = models.PositiveIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["title"]
        indexes = [models.Index(fields=["status", "category"], name="kb_article_status_idx")]

    def __str__(self) -> str:
        return self.title


class ArticleVote(models.Model):
    """'Was this helpful?' — one vote per visitor session and article."""

    article = models.ForeignKey(Article, on_delete=models.CASCADE, related_name="votes")
    session_key = models.CharField(max_length=64)
    helpful = models.BooleanField()
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["article", "session_key"], name="kb_vote_once")]

    def __str__(self) -> str:
        return f"{self.article_id}: {'yes' if self.helpful else 'no'}"


class Deflection(models.Model):
    """A portal visitor read a suggested article and left without opening a request."""

    article = models.ForeignKey(Article, on_delete=models.CASCADE, related_name="deflections")
    customer = models.ForeignKey(
        "customers.Customer", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    query = models.CharField(max_length=500, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    def __str__(self) -> str:
        return f"deflected by {self.article_id}"
