from django.contrib import admin

from .models import Article, Category, Deflection
from .services import article_save


@admin.register(Category)
class CategoryAdmin(admin.ModelAdmin):
    list_display = ("name", "slug", "position")
    prepopulated_fields = {"slug": ("name",)}


@admin.register(Article)
class ArticleAdmin(admin.ModelAdmin):
    list_display = (
        "title",
        "category",
        "status",
        "language",
        "translation_of",
        "helpful_yes",
        "helpful_no",
        "updated_at",
    )
    list_filter = ("status", "category", "language")
    search_fields = ("title", "body_markdown")
    prepopulated_fields = {"slug": ("title",)}
    readonly_fields = ("helpful_yes", "helpful_no")
    raw_id_fields = ("translation_of",)

    def save_model(self, request, obj, form, change):
        article_save(article=obj)


@admin.register(Deflection)
class DeflectionAdmin(admin.ModelAdmin):
    list_display = ("article", "customer", "query", "created_at")
