"""Single sign-on against a REAL OpenID Connect provider that this test starts itself: a
separate tiny Django project with django-oauth-toolkit (tests/accounts/oidc_provider/),
RS256 key generated here, on a free loopback port. The full authorization-code flow (with
PKCE and nonce) is driven with `requests`, as a browser would follow it."""

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.tickets.factories import AgentFactory

PROVIDER_DIR = Path(__file__).resolve().parent / "oidc_provider"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def provider(live_server, tmp_path):
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    port = _free_port()
    env = {
        "PATH": os.environ.get("PATH", ""),
        "PYTHONPATH": str(PROVIDER_DIR),
        "DJANGO_SETTINGS_MODULE": "provider_settings",
        "PROVIDER_DB": str(tmp_path / "provider.sqlite3"),
        "PROVIDER_RSA_KEY": pem,
    }
    callback = f"{live_server.url}/desk/sso/callback/"
    log = open(tmp_path / "provider.log", "w")  # noqa: SIM115
    proc = subprocess.Popen(  # noqa: S603
        [sys.executable, "provider_serve.py", callback, f"127.0.0.1:{port}"],
        cwd=PROVIDER_DIR,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    issuer = f"http://127.0.0.1:{port}/o"
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                if requests.get(f"{issuer}/.well-known/openid-configuration", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the test OIDC provider did not start: {(tmp_path / 'provider.log').read_text()}")
            time.sleep(0.2)
        yield issuer
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        log.close()


def _sso(live_server, username: str) -> tuple[requests.Session, requests.Response]:
    """Click "Sign in with SSO", sign in at the provider, follow redirects back."""
    browser = requests.Session()
    page = browser.get(f"{live_server.url}/desk/sign-in/?next=/desk/", timeout=10)
    start = re.search(r'href="(/desk/sso/start/[^"]*)"', page.text)
    assert start, "the sign-in page offers SSO when configured"
    login = browser.get(live_server.url + start.group(1).replace("&amp;", "&"), timeout=20)
    assert login.url.startswith("http://127.0.0.1:") and "/login/" in login.url, login.url
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', login.text).group(1)
    nxt = re.search(r'name="next" value="([^"]+)"', login.text).group(1).replace("&amp;", "&")
    landed = browser.post(
        login.url,
        data={"csrfmiddlewaretoken": token, "username": username, "password": "idp-pw", "next": nxt},
        timeout=30,
    )
    return browser, landed


@pytest.mark.django_db(transaction=True)
def test_sign_in_with_sso_against_a_real_provider(live_server, provider, settings):
    settings.OIDC_RP_CLIENT_ID = "cxdesk-test"
    settings.OIDC_RP_CLIENT_SECRET = "cxdesk-secret"  # noqa: S105
    settings.OIDC_OP_ISSUER = provider  # endpoints and JWKS by discovery
    settings.AUTHENTICATION_BACKENDS = ["django.contrib.auth.backends.ModelBackend", "accounts.oidc.StaffOIDCBackend"]
    settings.CXDESK_2FA_REQUIRED_ROLES = ["agent"]  # SSO counts as the second factor
    AgentFactory(username="ana", email="ana@cxdesk.test", first_name="Ana", role="agent")
    AgentFactory(username="boss", email="boss@cxdesk.test", role="supervisor")
    from django.contrib.auth import get_user_model

    users_before = get_user_model().objects.count()

    browser, landed = _sso(live_server, "ana.idp")
    assert landed.url == f"{live_server.url}/desk/", [r.url for r in landed.history]
    assert landed.status_code == 200
    me = browser.get(f"{live_server.url}/desk/security/", timeout=10)
    assert me.url == f"{live_server.url}/desk/security/"
    assert '<dd class="auth-who">ana</dd>' in me.text, "signed in as the staff user with that verified email"

    _, stranger = _sso(live_server, "stranger")
    assert stranger.url.startswith(f"{live_server.url}/desk/sign-in/")
    assert "did not find a desk account" in stranger.text
    assert get_user_model().objects.count() == users_before, "no account is created"

    liar_browser, liar = _sso(live_server, "liar")
    assert liar.url.startswith(f"{live_server.url}/desk/sign-in/"), "an unverified email is not trusted"
    assert liar_browser.get(f"{live_server.url}/desk/", timeout=10).url.startswith(f"{live_server.url}/desk/sign-in/")
