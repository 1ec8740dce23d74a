"""Two-factor sign-in: enrol from the Security page (QR as inline SVG), sign in with a
computed TOTP code, recovery codes (hashed, single use), and enforcement per role for the
desk and session-authenticated API (not for API keys)."""

import re
import time

import pyotp
import pytest
from django.test import Client
from rest_framework.test import APIClient

from accounts.models import RecoveryCode, TotpDevice
from integrations.services import api_key_create
from tests.tickets.factories import AgentFactory

pytestmark = pytest.mark.django_db


def sign_in(client, username, password="pw"):
    return client.post("/desk/sign-in/", {"step": "password", "username": username, "password": password})


def enrol(client) -> tuple[str, list[str]]:
    page = client.post("/desk/security/", {"action": "start"})
    html = page.content.decode()
    assert page.status_code == 200 and "<svg" in html and "<img" not in html, "QR drawn server-side, inline"
    secret = re.search(r'class="auth-secret">([A-Z2-7]+)<', html).group(1)
    wrong = client.post("/desk/security/", {"action": "confirm", "code": "000000"})
    assert wrong.status_code == 400 and not TotpDevice.objects.get(secret=secret).confirmed
    done = client.post("/desk/security/", {"action": "confirm", "code": pyotp.TOTP(secret).now()})
    codes = re.findall(r"<code>([a-z2-7]{5}-[a-z2-7]{5})</code>", done.content.decode())
    assert len(codes) == 10
    return secret, codes


def test_enrol_then_sign_in_with_totp_and_recovery_codes():
    user = AgentFactory(username="ana", email="ana@desk.test")
    client = Client()
    assert sign_in(client, "ana").url == "/desk/"
    secret, codes = enrol(client)
    device = TotpDevice.objects.get(user=user)
    assert device.confirmed and device.secret == secret
    stored = set(RecoveryCode.objects.filter(user=user).values_list("code_hash", flat=True))
    assert len(stored) == 10 and not stored & set(codes), "only hashes are stored"
    assert b"<code>" not in client.get("/desk/security/").content, "codes are shown once"
    assert client.get("/desk/").status_code == 200, "the enrolling session counts as verified"

    client.post("/desk/sign-out/")
    step = sign_in(client, "ana")
    assert step.status_code == 200 and b"Two-factor sign-in" in step.content
    assert client.get("/desk/").status_code == 302, "not signed in after the password alone"
    assert client.post("/desk/sign-in/", {"step": "code", "code": "123456"}).status_code == 400
    code = pyotp.TOTP(secret).at(time.time() + 30)  # the next step: the current one was used to enrol
    ok = client.post("/desk/sign-in/", {"step": "code", "code": code})
    assert ok.status_code == 302 and ok.url == "/desk/"
    assert client.get("/desk/").status_code == 200
    assert APIClient().get("/api/v1/tickets/").status_code in (401, 403)
    api = APIClient()
    api.cookies = client.cookies
    assert api.get("/api/v1/tickets/").status_code == 200, "a verified session may use the API"

    # the same code cannot be used twice
    other = Client()
    sign_in(other, "ana")
    assert other.post("/desk/sign-in/", {"step": "code", "code": code}).status_code == 400
    # a recovery code works once
    assert other.post("/desk/sign-in/", {"step": "code", "code": codes[0].upper()}).status_code == 302
    third = Client()
    sign_in(third, "ana")
    assert third.post("/desk/sign-in/", {"step": "code", "code": codes[0]}).status_code == 400
    assert RecoveryCode.objects.filter(user=user, used_at__isnull=False).count() == 1


def test_wrong_codes_are_throttled():
    AgentFactory(username="ana")
    client = Client()
    sign_in(client, "ana")
    secret, _ = enrol(client)
    client.post("/desk/sign-out/")
    sign_in(client, "ana")
    for _ in range(5):
        assert client.post("/desk/sign-in/", {"step": "code", "code": "000000"}).status_code == 400
    locked = client.post("/desk/sign-in/", {"step": "code", "code": pyotp.TOTP(secret).at(time.time() + 30)})
    assert locked.status_code == 429 and b"Too many wrong codes" in locked.content


def test_required_by_role_for_desk_and_session_api_but_not_api_keys(settings):
    settings.CXDESK_2FA_REQUIRED_ROLES = ["supervisor", "admin"]
    boss = AgentFactory(username="boss", role="supervisor")
    AgentFactory(username="ana", role="agent")
    agent_client = Client()
    assert sign_in(agent_client, "ana").url == "/desk/", "agents are not required here"
    assert agent_client.get("/desk/").status_code == 200

    client = Client()
    assert sign_in(client, "boss").url == "/desk/security/"
    assert client.get("/desk/").url == "/desk/security/"
    assert client.get("/desk/customers/1/").url == "/desk/security/"
    api = APIClient()
    api.cookies = client.cookies
    refused = api.get("/api/v1/tickets/")
    assert refused.status_code in (401, 403)
    assert refused.json()["error"]["code"] == "2fa_required"
    _, key = api_key_create(user=boss, name="pbx")
    keyed = APIClient()
    keyed.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    assert keyed.get("/api/v1/tickets/").status_code == 200, "API keys are not asked for a second factor"

    enrol(client)
    assert client.get("/desk/").status_code == 200
    assert api.get("/api/v1/tickets/").status_code == 200
    page = client.get("/desk/security/").content
    assert b'value="remove"' not in page, "a required second factor cannot be turned off"


@pytest.mark.django_db(transaction=True)
def test_websocket_refuses_a_session_without_the_second_step(settings):
    import asyncio

    from channels.testing import WebsocketCommunicator

    from tickets.consumers import DeskConsumer

    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}
    settings.CXDESK_2FA_REQUIRED_ROLES = ["supervisor"]
    boss = AgentFactory(username="boss", role="supervisor")
    ana = AgentFactory(username="ana", role="agent")

    async def connect(user, session):
        comm = WebsocketCommunicator(DeskConsumer.as_asgi(), "/ws/desk/")
        comm.scope["user"] = user
        comm.scope["session"] = session
        connected, _ = await comm.connect()
        if connected:
            await comm.disconnect()
        return connected

    assert not asyncio.run(connect(boss, {"cxdesk_2fa_needed": True}))
    assert asyncio.run(connect(boss, {"cxdesk_2fa_needed": True, "cxdesk_2fa_verified": True}))
    assert asyncio.run(connect(ana, {"cxdesk_2fa_needed": False}))
