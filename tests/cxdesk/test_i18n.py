"""Languages: the fallback chain, plural forms through the real catalogues, automatic
messages in the customer's language, the customer's language from the channel, the agent's
desk language, the switchers, translated canned responses and localised durations."""

import re

import pytest
from django.core import mail
from django.template import Context, Template
from django.test import Client
from django.utils import translation
from django.utils.translation import ngettext

from accounts.models import StaffProfile
from channels_app.services import ingest, ingest_raw_email
from customers.models import Customer, Identity
from cxdesk.i18n import (
    agent_language_for_scope,
    clean_language,
    customer_language,
    first_accepted,
    for_customer,
    language_from_scope,
    resolve_language,
)
from portal.services import portal_request_sign_in
from tests.channels_app.factories import inbound
from tests.tickets.factories import CustomerFactory, TicketFactory
from tickets.models import CannedResponse, Message
from tickets.services import reply, ticket_set_status
from tickets.templatetags.desk import duration, percent

pytestmark = pytest.mark.django_db


# --- the fallback chain -----------------------------------------------------------------


def test_fallback_chain_exact_then_base_then_default(settings):
    settings.LANGUAGES = [*settings.LANGUAGES, ("pt", "Português")]
    assert resolve_language("pl") == "pl"
    assert resolve_language("pl-PL") == "pl"  # its base language
    assert resolve_language("pt_BR") == "pt"  # pt-br -> pt
    assert resolve_language("de-AT") == settings.LANGUAGE_CODE == "en"  # not spoken: the default
    assert resolve_language("") == resolve_language(None) == "en"
    # what is stored on a person: only languages we speak, else "" (the default applies)
    assert clean_language("RU-ru") == "ru"
    assert clean_language("de") == ""
    assert clean_language("en-GB") == "en"
    assert first_accepted("de-DE,de;q=0.9,ru;q=0.8,pl;q=0.5") == "ru"
    assert first_accepted("") == ""


def test_automatic_text_follows_the_customers_language_with_fallback():
    text = "Your sign-in link"
    wanted = {"ru-RU": "Ваша ссылка для входа", "pl": "Link do logowania", "de-CH": text, "": text}
    for code, expected in wanted.items():
        customer = Customer(language=code)
        with for_customer(customer):
            assert translation.gettext(text) == expected, code
    assert customer_language(None) == "en"


# --- plural forms through the real catalogues -------------------------------------------


@pytest.mark.parametrize(
    ("language", "expected"),
    [
        ("ru", {1: "1 запрос", 2: "2 запроса", 5: "5 запросов", 11: "11 запросов", 21: "21 запрос", 22: "22 запроса"}),
        ("pl", {1: "1 zgłoszenie", 2: "2 zgłoszenia", 5: "5 zgłoszeń", 12: "12 zgłoszeń", 22: "22 zgłoszenia"}),
        ("it", {1: "1 richiesta", 2: "2 richieste"}),
        ("en", {1: "1 request", 5: "5 requests"}),
    ],
)
def test_plural_forms(language, expected):
    template = Template(
        "{% load i18n %}{% blocktranslate count n=n %}{{ n }} request{% plural %}{{ n }} requests{% endblocktranslate %}"
    )
    with translation.override(language):
        for n, text in expected.items():
            assert ngettext("%(n)s request", "%(n)s requests", n) % {"n": n} == text
            assert template.render(Context({"n": n})) == text  # the portal's request count


def test_portal_request_count_in_russian(client, sms_inbox, agent):
    customer = CustomerFactory(language="ru")
    for ticket in TicketFactory.create_batch(2, customer=customer):
        reply_target = Identity.objects.get_or_create(customer=customer, kind="phone", address="+48600100777")[0]
        Message.objects.create(
            ticket=ticket, direction="inbound", channel="sms", identity=reply_target, body_text="?", status="received"
        )
    session = client.session
    session["portal_customer_id"] = customer.pk
    session.save()
    html = client.get("/portal/").content.decode()
    assert 'lang="ru"' in html and "2 запроса" in html


# --- automatic messages in the customer's language --------------------------------------


def raw_mail(sender: str, extra: str = "") -> bytes:
    return (
        f"From: Giulia <{sender}>\r\nTo: support@example.com\r\nSubject: Bollitore rotto\r\n"
        f"Message-ID: <{sender}.1@client>\r\n{extra}\r\nNon scalda.\r\n"
    ).encode()


def test_italian_customer_gets_acknowledgement_and_survey_in_italian(
    email_inbox, agent, django_capture_on_commit_callbacks
):
    customer = CustomerFactory(name="Giulia", language="it")
    Identity.objects.create(customer=customer, kind="email", address="giulia@example.it")
    with django_capture_on_commit_callbacks(execute=True):
        ticket = ingest_raw_email(raw=raw_mail("giulia@example.it"), inbox=email_inbox, source="test").ticket
    [ack] = mail.outbox
    assert ack.body.startswith("Gentile Giulia,")
    assert "grazie per averci scritto" in ack.body and ticket.reference in ack.body
    assert "Thank you" not in ack.body
    assert ack.extra_headers["Content-Language"] == "it"
    with django_capture_on_commit_callbacks(execute=True):
        reply(ticket=ticket, author=agent, body="Un nuovo bollitore è in arrivo.")
        ticket_set_status(ticket=ticket, status="solved", actor=agent)
    survey = mail.outbox[-1]
    assert f"Com'è andata con la richiesta {ticket.reference}" in survey.body
    assert re.search(r"5 – http://\S+/survey/\S+\?csat=5", survey.body)
    assert "How did we do" not in survey.body
    assert survey.extra_headers["Content-Language"] == "it"
    link = re.search(r"http://[^/\s]+(/survey/[^/\s]+/)\?csat=4", survey.body).group(1)
    page = Client(HTTP_ACCEPT_LANGUAGE="en").get(link, {"csat": 4}).content.decode()
    assert 'lang="it"' in page and "Com'è andata?" in page.replace("&#x27;", "'")  # the page follows the mail


def test_english_customer_still_gets_english(email_inbox, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        ingest_raw_email(raw=raw_mail("jan@example.com"), inbox=email_inbox, source="test")
    assert mail.outbox[0].body.startswith("Hello Giulia,")


def test_content_language_sets_a_new_customers_language(email_inbox, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        result = ingest_raw_email(
            raw=raw_mail("nuovo@example.it", extra="Content-Language: it-IT\r\n"), inbox=email_inbox, source="test"
        )
    assert Customer.objects.get(pk=result.ticket.customer_id).language == "it"
    assert mail.outbox[0].body.startswith("Gentile")


def test_channel_locale_never_overrides_a_known_language(sms_inbox):
    first = ingest(inbound(sms_inbox, address="+48600100900", language="ru-RU"))
    customer = Customer.objects.get(pk=first.ticket.customer_id)
    assert customer.language == "ru"
    ingest(inbound(sms_inbox, address="+48600100900", language="pl"))  # e.g. a phone set to Polish
    customer.refresh_from_db()
    assert customer.language == "ru"
    unknown = ingest(inbound(sms_inbox, address="+48600100901", language="xx"))
    assert Customer.objects.get(pk=unknown.ticket.customer_id).language == ""


def test_telegram_language_code_sets_the_customers_language(client):
    from channels_app.models import Inbox
    from tests import DATA
    from tests.channels_app.factories import InboxFactory

    inbox = InboxFactory(
        kind="telegram", name="Telegram", transport=Inbox.Transport.LIVE,
        secrets={"bot_token": "123456:ABC-test", "secret_token": "s3cr3t-token"},
    )  # fmt: skip
    raw = (DATA / "webhooks/telegram/text.json").read_bytes()  # from.language_code "ru"
    response = client.post(
        f"/hooks/telegram/{inbox.pk}/",
        data=raw,
        content_type="application/json",
        HTTP_X_TELEGRAM_BOT_API_SECRET_TOKEN="s3cr3t-token",
    )
    assert response.status_code == 200
    assert Identity.objects.get(kind="telegram").customer.language == "ru"


def test_sign_in_link_mail_in_the_customers_language(django_capture_on_commit_callbacks):
    customer = CustomerFactory(language="pl")
    Identity.objects.create(customer=customer, kind="email", address="ola@example.pl")
    with django_capture_on_commit_callbacks(execute=True):
        portal_request_sign_in(address="ola@example.pl", ip="127.0.0.9", base_url="http://testserver")
    [link] = mail.outbox
    assert link.subject == "Link do logowania"
    assert "/portal/sign-in/" in link.body and "Open this link" not in link.body


# --- the agent's desk language ------------------------------------------------------------


def test_desk_renders_in_the_agents_language(agent):
    desk = Client()
    desk.force_login(agent)
    html = desk.get("/desk/", HTTP_ACCEPT_LANGUAGE="fa").content.decode()
    assert 'lang="fa" dir="rtl"' in html  # no choice yet: the browser's language
    response = desk.post("/desk/language/", {"language": "pl", "next": "/desk/"})
    assert response.status_code == 302 and response.cookies["cxdesk_language"].value == "pl"
    assert StaffProfile.objects.get(user=agent).language == "pl"
    html = Client(HTTP_ACCEPT_LANGUAGE="ru")
    html.force_login(agent)
    page = html.get("/desk/").content.decode()  # another browser: the profile wins
    assert 'lang="pl" dir="ltr"' in page and ">Skrzynka<" in page.replace("</svg>", ">")
    assert desk.post("/desk/language/", {"language": "xx"}).status_code == 302
    assert StaffProfile.objects.get(user=agent).language == "pl"


def test_socket_language_profile_then_cookie_then_accept_language(agent):
    scope = {"headers": [(b"cookie", b"a=b; cxdesk_language=it"), (b"accept-language", b"ru,en;q=0.5")]}
    assert language_from_scope(scope) == "it"
    assert language_from_scope({"headers": [(b"accept-language", b"ru,en;q=0.5")]}) == "ru"
    assert agent_language_for_scope(agent.pk, scope) == "it"
    StaffProfile.objects.create(user=agent, language="fa")
    assert agent_language_for_scope(agent.pk, scope) == "fa"


def test_sla_warning_in_the_assignees_language(agent):
    from sla.services import _warning_text

    StaffProfile.objects.create(user=agent, language="ru")
    assert _warning_text("first_response", 12, user_id=agent.pk) == "Первый ответ нужен через 12 мин"
    assert _warning_text("resolution", 3, user_id=None) == "Resolution due in 3 min"


# --- the switchers --------------------------------------------------------------------------


def test_portal_switcher_sticks_in_a_cookie_and_on_the_customer(client):
    response = client.post("/portal/language/", {"language": "ru", "next": "/portal/"})
    assert response.status_code == 302 and response["Location"] == "/portal/"
    assert 'lang="ru"' in client.get("/portal/", HTTP_ACCEPT_LANGUAGE="en").content.decode()
    customer = CustomerFactory(language="")
    session = client.session
    session["portal_customer_id"] = customer.pk
    session.save()
    client.post("/portal/language/", {"language": "fa", "next": "https://evil.example/"})
    customer.refresh_from_db()
    assert customer.language == "fa"
    page = client.get("/portal/").content.decode()
    assert 'lang="fa" dir="rtl"' in page


def test_agent_sets_the_customers_language(agent):
    desk = Client()
    desk.force_login(agent)
    customer = CustomerFactory()
    ticket = TicketFactory(customer=customer)
    Identity.objects.create(customer=customer, kind="email", address="c@example.com")
    desk.post(f"/desk/customers/{customer.pk}/language/", {"language": "it", "next": f"/desk/tickets/{ticket.pk}/"})
    customer.refresh_from_db()
    assert customer.language == "it"
    html = desk.get(f"/desk/tickets/{ticket.pk}/").content.decode()
    assert '<option value="it" lang="it" selected>Italiano</option>' in html
    html = desk.get(f"/desk/tickets/{ticket.pk}/", HTTP_ACCEPT_LANGUAGE="ru").content.decode()
    assert "<b>1</b><span>обращение</span>" in html and "<b>1</b><span>открытое</span>" in html  # plural forms


def test_canned_response_offered_in_the_customers_language(agent):
    desk = Client()
    desk.force_login(agent)
    original = CannedResponse.objects.create(title="Refund", body="Your refund is on its way.")
    CannedResponse.objects.create(
        title="Rimborso", body="Il rimborso è in arrivo.", language="it", translation_of=original
    )
    CannedResponse.objects.create(title="Zwrot", body="Zwrot jest w drodze.", language="pl", translation_of=original)
    for language, body in (("it-CH", "Il rimborso è in arrivo."), ("ru", "Your refund is on its way.")):
        ticket = TicketFactory(customer=CustomerFactory(language=language))
        Identity.objects.create(customer=ticket.customer, kind="email", address=f"{language}@example.com")
        html = desk.get(f"/desk/tickets/{ticket.pk}/").content.decode()
        assert f'data-text="{body}"' in html.replace("&#x27;", "'")
        titles = re.findall(r'data-text="[^"]*">(Refund|Rimborso|Zwrot)</option>', html)
        assert len(titles) == 1  # one entry per canned response, not one per translation


def test_kb_search_offers_the_customers_language(agent):
    from kb.models import Article

    desk = Client()
    desk.force_login(agent)
    en = Article.objects.create(title="Returns policy", slug="returns", body_markdown="returns", status="published")
    Article.objects.create(
        title="Politica di reso",
        slug="reso",
        body_markdown="reso",
        status="published",
        language="it",
        translation_of=en,
    )
    found = desk.get("/kb/api/search/", {"q": "returns", "lang": "it"}).json()["results"]
    assert [r["title"] for r in found] == ["Politica di reso"]
    assert desk.get("/kb/api/search/", {"q": "returns"}).json()["results"][0]["title"] == "Returns policy"


def test_public_kb_prefers_the_readers_language_and_links_the_others(client):
    from kb.models import Article

    en = Article.objects.create(title="Returns policy", slug="returns", body_markdown="returns", status="published")
    Article.objects.create(
        title="Политика возврата", slug="vozvrat", body_markdown="returns", status="published", language="ru",
        translation_of=en,
    )  # fmt: skip
    html = client.get("/kb/", {"q": "returns"}, HTTP_ACCEPT_LANGUAGE="ru").content.decode()
    assert "Политика возврата" in html and "Returns policy" not in html
    page = client.get("/kb/returns/", HTTP_ACCEPT_LANGUAGE="ru").content.decode()
    assert 'hreflang="ru">Русский</a>' in page and "Эта статья на других языках:" in page
    suggestions = client.get("/kb/suggest/", {"subject": "returns"}, HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "Returns policy" in suggestions and "Политика" not in suggestions


# --- numbers and durations ------------------------------------------------------------------


def test_durations_and_percentages_are_localised():
    with translation.override("ru"):
        assert duration(2 * 3600 + 5 * 60) == "2 ч 05 мин"
        assert percent(0.875, 1) == "87,5 %"
    with translation.override("pl"):
        assert duration(3 * 86400 + 4 * 3600).startswith("3 ")
    with translation.override("en"):
        assert duration(2 * 3600 + 5 * 60) == "2 h 05 m"
        assert percent(0.875, 1) == "87.5 %"
