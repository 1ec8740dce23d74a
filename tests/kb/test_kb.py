import pytest
from django.test import Client

from kb.models import Article, Category, Deflection
from kb.services import article_save

pytestmark = pytest.mark.django_db


@pytest.fixture
def articles():
    shipping = Category.objects.create(name="Shipping", slug="shipping")
    made = []
    for title, body, status in [
        (
            "Where is my parcel",
            "Track your **parcel** with the link in your confirmation email.<script>alert(1)</script>",
            "published",
        ),
        ("Returns and refunds", "Send the item back within 30 days for a full refund.", "published"),
        ("Secret draft", "Internal draft about parcel pricing", "draft"),
    ]:
        made.append(
            article_save(
                article=Article(
                    title=title,
                    slug=title.lower().replace(" ", "-"),
                    category=shipping,
                    body_markdown=body,
                    status=status,
                )
            )
        )
    return made


def test_public_pages_render_sanitised_markdown_and_hide_drafts(client, articles):
    page = client.get("/kb/where-is-my-parcel/").content.decode()
    assert "<strong>parcel</strong>" in page
    assert "<script>alert" not in page
    assert client.get("/kb/secret-draft/").status_code == 404
    index = client.get("/kb/").content.decode()
    assert "Returns and refunds" in index
    assert "Secret draft" not in index


def test_search_finds_published_articles_by_words(client, articles):
    results = client.get("/kb/", {"q": "parcel"}).context["results"]
    assert [a.title for a in results] == ["Where is my parcel"]
    assert [a.title for a in client.get("/kb/", {"q": "refund days"}).context["results"]] == ["Returns and refunds"]


def test_helpful_votes_count_once_per_session(client, articles):
    for _ in range(3):
        client.post("/kb/where-is-my-parcel/vote/", {"helpful": "yes"})
    Client().post("/kb/where-is-my-parcel/vote/", {"helpful": "no"})
    article = Article.objects.get(slug="where-is-my-parcel")
    assert (article.helpful_yes, article.helpful_no) == (1, 1)


def test_related_articles_and_agent_search(client, articles, agent):
    related = client.get("/kb/where-is-my-parcel/").context["related"]
    assert [a.title for a in related] == ["Returns and refunds"]
    assert client.get("/kb/api/search/", {"q": "parcel"}).status_code == 302
    client.force_login(agent)
    body = client.get("/kb/api/search/", {"q": "parcel"}).json()
    assert body["results"][0]["url"].endswith("/kb/where-is-my-parcel/")


def test_portal_suggestions_and_deflection(client, articles):
    html = client.get("/kb/suggest/", {"subject": "my parcel is late"}).content.decode()
    assert "Where is my parcel" in html
    assert "Secret draft" not in html
    assert client.post("/kb/where-is-my-parcel/deflected/", {"q": "my parcel is late"}).status_code == 204
    assert Deflection.objects.get().query == "my parcel is late"
