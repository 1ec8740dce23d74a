"""Staff sign-in on the desk's own page: redirects, sign-out, password reset through
Django's flow, and throttling per account and per IP (also under 50 parallel guesses)."""

import re
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import unquote

import pytest
import requests
from django.contrib.auth.signals import user_login_failed
from django.core import mail

from tests.tickets.factories import AgentFactory

SIGN_IN = "/desk/sign-in/"


def post_password(client, username, password, ip="127.0.0.1", **extra):
    data = {"step": "password", "username": username, "password": password, **extra}
    return client.post(SIGN_IN, data, REMOTE_ADDR=ip)


@pytest.mark.django_db
def test_sign_in_page_is_the_desks_own(client):
    page = client.get(SIGN_IN)
    assert page.status_code == 200
    html = page.content.decode()
    assert "Django administration" not in html
    assert "cxdesk/desk.css" in html and 'class="auth-card"' in html, "the one design system"
    assert 'href="/desk/sign-in/reset/"' in html, "Forgot password? links to the reset flow"
    assert "Sign in with SSO" not in html, "no SSO button unless configured"
    # the old addresses lead here
    assert client.get("/accounts/login/?next=/desk/").url == "/desk/sign-in/?next=/desk/"
    assert client.get("/admin/login/?next=/admin/").url == "/desk/sign-in/?next=/admin/"
    chain = client.get("/desk/", follow=True).redirect_chain
    assert unquote(chain[-1][0]) == "/desk/sign-in/?next=/desk/", chain


def test_templates_have_no_inline_script_or_handlers():
    root = Path(__file__).resolve().parents[2] / "templates" / "accounts"
    for path in root.glob("*.html"):
        text = path.read_text()
        assert "<script" not in text, path
        assert not re.search(r"\son[a-z]+\s*=", text), path


@pytest.mark.django_db
def test_sign_in_success_failure_and_home_redirects(client):
    AgentFactory(username="ana", password="right-pw")
    AgentFactory(username="customer-user", is_staff=False, password="right-pw")
    assert client.get("/").url == "/portal/"
    bad = post_password(client, "ana", "wrong")
    assert bad.status_code == 400
    assert b"correct username and password" in bad.content
    refused = post_password(client, "customer-user", "right-pw")
    assert refused.status_code == 400, "a non-staff account cannot sign in to the desk"
    ok = post_password(client, "ana", "right-pw", next="/desk/?view=mine")
    assert ok.status_code == 302 and ok.url == "/desk/?view=mine"
    assert client.get("/").url == "/desk/"
    assert client.get("/desk/").status_code == 200
    assert client.get("/desk/sign-out/").status_code == 405, "sign-out is a POST"
    out = client.post("/desk/sign-out/")
    assert out.url == "/desk/sign-in/"
    assert client.get("/desk/").status_code == 302


@pytest.mark.django_db
def test_open_redirect_is_refused(client):
    AgentFactory(username="ana", password="right-pw")
    ok = post_password(client, "ana", "right-pw", next="https://evil.example/")
    assert ok.url == "/desk/"


@pytest.mark.django_db
def test_password_reset_by_mail(client):
    AgentFactory(username="ana", email="ana@cxdesk.test", password="old-pw")
    form = client.get("/desk/sign-in/reset/")
    assert form.status_code == 200 and b"Django administration" not in form.content
    sent = client.post("/desk/sign-in/reset/", {"email": "ana@cxdesk.test"})
    assert sent.url == "/desk/sign-in/reset/sent/"
    assert len(mail.outbox) == 1
    link = re.search(r"http://testserver(/desk/sign-in/reset/\S+/)", mail.outbox[0].body).group(1)
    confirm = client.get(link, follow=True)
    assert b"Choose a new password" in confirm.content
    done = client.post(
        confirm.redirect_chain[-1][0], {"new_password1": "a-new-long-pw", "new_password2": "a-new-long-pw"}
    )
    assert done.url == "/desk/sign-in/reset/done/"
    assert post_password(client, "ana", "old-pw").status_code == 400
    assert post_password(client, "ana", "a-new-long-pw").status_code == 302
    # an unknown address looks the same and sends nothing
    assert client.post("/desk/sign-in/reset/", {"email": "nobody@x.test"}).status_code == 302
    assert len(mail.outbox) == 1
    # and the form cannot flood a mailbox
    for _ in range(4):
        assert client.post("/desk/sign-in/reset/", {"email": "ana@cxdesk.test"}).status_code == 302
    flood = client.post("/desk/sign-in/reset/", {"email": "ana@cxdesk.test"})
    assert flood.status_code == 429 and b"Too many reset requests" in flood.content
    assert len(mail.outbox) == 5


@pytest.mark.django_db
def test_account_lockout_refuses_even_the_right_password(client, settings):
    AgentFactory(username="ana", password="right-pw")
    failures = []

    def record(sender, credentials, request=None, **kw):
        failures.append(credentials)

    user_login_failed.connect(record)
    try:
        for _ in range(5):
            assert post_password(client, "ana", "guess").status_code == 400
        locked = post_password(client, "ANA", "right-pw")
    finally:
        user_login_failed.disconnect(record)
    assert locked.status_code == 429
    assert b"Too many failed sign-in attempts. Try again in 15 minutes." in locked.content
    assert "_auth_user_id" not in client.session
    assert len(failures) == 6 and failures[-1]["reason"] == "throttled", "listeners (audit) see every failure"
    # another account from another address is not affected
    AgentFactory(username="ben", password="right-pw")
    assert post_password(client, "ben", "right-pw", ip="10.0.0.9").status_code == 302


@pytest.mark.django_db
def test_per_ip_limit(client, settings):
    settings.CXDESK_SIGNIN_MAX_PER_IP = 20
    AgentFactory(username="ana", password="right-pw")
    for i in range(20):
        assert post_password(client, f"nobody{i}", "guess").status_code == 400
    assert post_password(client, "ana", "right-pw").status_code == 429, "the IP is over its limit"
    assert post_password(client, "ana", "right-pw", ip="10.1.2.3").status_code == 302


@pytest.mark.django_db(transaction=True)
def test_fifty_parallel_wrong_passwords_are_throttled(live_server):
    AgentFactory(username="ana", password="right-pw")
    url = live_server.url + SIGN_IN
    session = requests.Session()
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', session.get(url, timeout=10).text).group(1)
    cookies = session.cookies.get_dict()

    def attempt(password):
        return requests.post(
            url,
            data={"step": "password", "username": "ana", "password": password, "csrfmiddlewaretoken": token},
            cookies=cookies,
            headers={"Referer": url},
            allow_redirects=False,
            timeout=30,
        ).status_code

    with ThreadPoolExecutor(max_workers=16) as pool:
        codes = list(pool.map(attempt, [f"wrong-{i}" for i in range(50)]))
    assert codes.count(400) <= 5, f"at most 5 passwords were checked: {codes}"
    assert codes.count(429) >= 45
    assert set(codes) <= {400, 429}
    assert attempt("right-pw") == 429, "locked: the right password is refused too"
