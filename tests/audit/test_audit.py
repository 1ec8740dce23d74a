import pytest
from django.contrib.auth.models import Group
from django.db import connection, transaction
from django.db.utils import DatabaseError
from django.test import Client
from rest_framework.test import APIClient

from audit.models import AppendOnlyError, AuditEntry
from channels_app.services import inbox_upsert
from customers.services import merge_customers, unmerge_customers
from integrations.services import api_key_create
from tests.tickets.factories import AgentFactory, CustomerFactory, TeamFactory

pytestmark = pytest.mark.django_db
A = AuditEntry.Action


@pytest.fixture
def admin_user():
    return AgentFactory(username="root", is_superuser=True)


def actions() -> list[str]:
    return list(AuditEntry.objects.order_by("id").values_list("action", flat=True))


def test_sign_in_failure_and_sign_out_are_recorded_with_ip_and_agent(agent):
    client = Client(HTTP_USER_AGENT="Firefox/\x00140", REMOTE_ADDR="203.0.113.9")  # NUL: stripped, not a 500
    client.post("/desk/sign-in/", {"step": "password", "username": "ana", "password": "wrong"})
    client.post("/desk/sign-in/", {"step": "password", "username": "ana", "password": "pw"})
    client.post("/desk/sign-out/")
    failed, signed_in, signed_out = AuditEntry.objects.filter(
        action__in=[A.SIGN_IN_FAILED, A.SIGN_IN, A.SIGN_OUT]
    ).order_by("id")
    assert failed.action == A.SIGN_IN_FAILED and failed.data == {"username": "ana"} and failed.actor is None
    assert "wrong" not in str(failed.data), "never the password"
    assert (signed_in.action, signed_in.actor, signed_in.ip, signed_in.user_agent) == (
        A.SIGN_IN,
        agent,
        "203.0.113.9",
        "Firefox/140",
    )
    assert signed_out.action == A.SIGN_OUT and signed_out.actor == agent


def test_rights_roles_and_team_changes_through_the_admin(admin_user, agent):
    client = Client()
    client.force_login(admin_user)
    # The agent fixture is a supervisor already (tests.tickets.factories): add another group.
    supervisor = Group.objects.get(name="supervisor")
    group = Group.objects.create(name="auditors")
    start = AuditEntry.objects.count()
    response = client.post(
        f"/admin/auth/user/{agent.pk}/change/",
        {
            "username": "ana",
            "is_active": "on",
            "is_staff": "on",
            "is_superuser": "on",
            "groups": [supervisor.pk, group.pk],
            "date_joined_0": "2026-01-01",
            "date_joined_1": "10:00:00",
            "last_login_0": "",
            "last_login_1": "",
        },
    )
    assert response.status_code == 302, response.content[:2000]
    new = list(AuditEntry.objects.order_by("id")[start:])
    flags = next(e for e in new if e.action == A.USER_FLAGS)
    assert flags.data["changes"] == {"is_superuser": [False, True]}
    assert flags.actor == admin_user and flags.object_id == str(agent.pk)
    groups = next(e for e in new if e.action == A.USER_GROUPS)
    assert groups.data == {"username": "ana", "added": ["auditors"], "removed": []}

    team = TeamFactory(name="Billing")
    team.members.add(agent)
    agent.teams.remove(team)
    team.members.add(agent)
    team.members.clear()
    entries = AuditEntry.objects.filter(action=A.TEAM_MEMBERS).order_by("id")
    assert [(e.data["added"], e.data["removed"]) for e in entries] == [
        (["ana"], []),
        ([], ["ana"]),
        (["ana"], []),
        ([], ["ana"]),
    ]


def test_api_keys_merges_and_inbox_settings_are_recorded_without_secrets(agent):
    api = APIClient()
    api.force_authenticate(agent)
    key = api.post("/api/v1/api-keys/", {"name": "crm"}, format="json").json()
    api.post(f"/api/v1/api-keys/{key['id']}/revoke/")
    created, revoked = AuditEntry.objects.filter(action__in=[A.API_KEY_CREATED, A.API_KEY_REVOKED]).order_by("id")
    assert created.actor == agent and created.data["prefix"] == key["prefix"]
    assert key["key"] not in str(created.data)
    assert revoked.object_id == str(key["id"])

    keep, other = CustomerFactory(), CustomerFactory()
    merge = merge_customers(keep=keep, other=other, actor=agent)
    unmerge_customers(merge=merge, actor=agent)
    assert actions()[-2:] == [A.CUSTOMER_MERGED, A.CUSTOMER_UNMERGED]
    assert AuditEntry.objects.get(action=A.CUSTOMER_MERGED).data == {
        "merge": merge.pk,
        "kept": keep.pk,
        "other": other.pk,
    }
    doomed = CustomerFactory()
    doomed_id = doomed.pk
    doomed.delete()
    assert AuditEntry.objects.filter(action=A.CUSTOMER_DELETED, object_id=str(doomed_id)).exists()

    inbox_upsert(kind="telegram", name="Bot", values={"bot_token": "123:SECRET-TOKEN-VALUE"})
    inbox_upsert(kind="telegram", name="Bot", values={"bot_token": "456:OTHER-SECRET", "transport": "file"})
    first, second = AuditEntry.objects.filter(action=A.INBOX_SETTINGS).order_by("id")
    assert first.data["created"] is True
    assert second.data["secrets_changed"] == ["bot_token"]
    assert second.data["changed"]["transport"] == ["live", "file"]
    hook = api.post(
        "/api/v1/webhooks/",
        {"url": "https://crm.example/hook?token=abc123", "events": ["ticket.created"]},
        format="json",
    ).json()
    api.delete(f"/api/v1/webhooks/{hook['id']}/")
    added, removed = AuditEntry.objects.filter(action__in=[A.WEBHOOK_CREATED, A.WEBHOOK_DELETED]).order_by("id")
    assert (added.action, added.actor, added.data) == (
        A.WEBHOOK_CREATED,
        agent,
        {"url": "https://crm.example/hook", "events": ["ticket.created"]},
    )
    assert removed.action == A.WEBHOOK_DELETED and removed.actor == agent
    dumped = str(list(AuditEntry.objects.values_list("data", flat=True)))
    assert "SECRET-TOKEN-VALUE" not in dumped and "OTHER-SECRET" not in dumped
    assert "abc123" not in dumped and hook["secret"] not in dumped


def test_the_log_is_append_only(agent):
    api_key_create(user=agent, name="x")
    entry = AuditEntry.objects.get(action=A.API_KEY_CREATED)
    entry.data = {"forged": True}
    with pytest.raises(AppendOnlyError):
        entry.save()
    with pytest.raises(AppendOnlyError):
        entry.delete()
    with pytest.raises(AppendOnlyError):
        AuditEntry.objects.filter(pk=entry.pk).update(action="x")
    with pytest.raises(AppendOnlyError):
        AuditEntry.objects.all().delete()
    for sql in ("UPDATE audit_auditentry SET action = 'x'", "DELETE FROM audit_auditentry"):
        with pytest.raises(DatabaseError, match="append-only"), transaction.atomic(), connection.cursor() as cur:
            cur.execute(sql)
    agent.delete()  # a deleted user leaves the log as it was
    entry = AuditEntry.objects.get(pk=entry.pk)
    assert entry.actor_id == agent.pk or entry.actor_label


def test_api_admins_only_filters_cursor_and_error_shape(admin_user, agent):
    for i in range(5):
        api_key_create(user=agent, name=f"k{i}", actor=agent)
    api_key_create(user=admin_user, name="mine", actor=admin_user)
    api = APIClient()
    api.force_authenticate(agent)
    denied = api.get("/api/v1/audit/")
    assert denied.status_code == 403 and denied.json()["error"]["code"] == "permission_denied"

    _, key = api_key_create(user=admin_user, name="audit-reader", actor=admin_user)
    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    page = api.get("/api/v1/audit/", {"action": A.API_KEY_CREATED, "actor": agent.pk, "page_size": 2}).json()
    assert [r["data"]["name"] for r in page["results"]] == ["k4", "k3"]
    assert page["next"] and page["previous"] is None
    page2 = api.get(page["next"]).json()
    assert [r["data"]["name"] for r in page2["results"]] == ["k2", "k1"]
    today = AuditEntry.objects.latest("id").created_at.date().isoformat()
    assert len(api.get("/api/v1/audit/", {"since": today, "until": today, "actor": "root"}).json()["results"]) == 2
    assert api.get("/api/v1/audit/", {"until": "2000-01-01"}).json()["results"] == []
    bad = api.get("/api/v1/audit/", {"since": "yesterday"})
    assert bad.status_code == 400 and bad.json()["error"]["fields"] == {"since": ["not a date (YYYY-MM-DD)"]}
    assert api.get("/api/v1/audit/", {"action": "nope"}).status_code == 400
    # reading with an API key is itself attributed to the key in later records
    api.post("/api/v1/api-keys/", {"name": "via-key"}, format="json")
    via = AuditEntry.objects.filter(action=A.API_KEY_CREATED).latest("id")
    assert via.actor == admin_user and via.api_key_label.startswith("audit-reader")


def test_desk_page_for_admins_with_filters_and_pages(admin_user, agent, django_assert_max_num_queries):
    for i in range(55):
        api_key_create(user=agent, name=f"k{i}", actor=agent)
    client = Client()
    client.force_login(agent)
    assert client.get("/desk/audit/").status_code == 403
    assert 'href="/desk/audit/"' not in client.get("/desk/").content.decode()
    client.force_login(admin_user)
    with django_assert_max_num_queries(8):
        page = client.get("/desk/audit/", {"action": A.API_KEY_CREATED, "actor": agent.pk})
    html = page.content.decode()
    assert 'href="/desk/audit/"' in html, "the top bar links the log for admins"
    assert page.status_code == 200 and html.count('class="audit-api_keycreated"') == 50
    assert "<script>" not in html and " onclick=" not in html
    older = page.context["older"]
    assert older
    rest = client.get("/desk/audit/" + older)
    assert len(rest.context["entries"]) == 5 and not rest.context["older"]
    assert client.get("/desk/audit/", {"since": "soon"}).status_code == 400


def test_the_log_is_for_the_admin_role_not_only_superusers():
    from audit.selectors import can_view_audit
    from tests.tickets.factories import AgentFactory

    ada = AgentFactory(username="ada", role="admin")
    assert can_view_audit(ada)
    assert not can_view_audit(AgentFactory(username="sue", role="supervisor"))
    desk = Client()
    desk.force_login(ada)
    assert desk.get("/desk/audit/").status_code == 200
