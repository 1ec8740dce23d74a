import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _django_setup(env: dict[str, str]) -> subprocess.CompletedProcess:
    clean = {
        k: v
        for k, v in os.environ.items()
        if k
        not in {
            "SECRET_KEY",
            "DEBUG",
            "DATABASE_URL",
            "REDIS_URL",
            "CELERY_BROKER_URL",
            "CELERY_TASK_ALWAYS_EAGER",
            "EMAIL_URL",
        }
    }
    return subprocess.run(
        [
            sys.executable,
            "-c",
            "import django; django.setup(); from django.conf import settings; print(settings.DATABASES['default']['ENGINE'], settings.CELERY_TASK_ALWAYS_EAGER, settings.CHANNEL_LAYERS['default']['BACKEND'])",
        ],
        cwd=ROOT,
        env={
            **clean,
            "DJANGO_SETTINGS_MODULE": "cxdesk.settings",
            "CXDESK_VAR_DIR": str(ROOT / "var" / "test-settings"),
            **env,
        },
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_refuses_to_start_without_secret_key_when_debug_is_off():
    result = _django_setup({"DEBUG": "0", "SECRET_KEY": ""})
    assert result.returncode != 0
    assert "SECRET_KEY is not set" in result.stderr


def test_embedded_defaults_without_services():
    result = _django_setup({"DEBUG": "1", "SECRET_KEY": ""})
    assert result.returncode == 0, result.stderr
    engine, eager, layer = result.stdout.split()
    assert engine == "django.db.backends.sqlite3"
    assert eager == "True"
    assert layer == "channels.layers.InMemoryChannelLayer"


def test_services_from_the_environment():
    result = _django_setup(
        {"SECRET_KEY": "k", "DATABASE_URL": "postgres://u@127.0.0.1:5432/x", "REDIS_URL": "redis://127.0.0.1:6379/9"}
    )
    assert result.returncode == 0, result.stderr
    engine, eager, layer = result.stdout.split()
    assert engine == "cxdesk.postgresql"
    assert eager == "False"
    assert layer == "channels_redis.core.RedisChannelLayer"


def test_timeouts_and_broker_transport_options_from_the_environment():
    probe = (
        "import django, json; django.setup(); from django.conf import settings as s; "
        "print(json.dumps([s.EMAIL_TIMEOUT, s.CELERY_BROKER_TRANSPORT_OPTIONS, s.CELERY_TASK_SOFT_TIME_LIMIT, "
        "s.CELERY_TASK_TIME_LIMIT, s.CXDESK_OUTBOX_LEASE]))"
    )
    env = {k: v for k, v in os.environ.items() if k not in {"EMAIL_URL", "EMAIL_TIMEOUT"}}
    base = {**env, "DJANGO_SETTINGS_MODULE": "cxdesk.settings", "SECRET_KEY": "x",
            "CXDESK_VAR_DIR": str(ROOT / "var" / "test-settings")}  # fmt: skip

    def run(extra):
        out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env={**base, **extra},
                             capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
        return out

    import json

    default = run({"EMAIL_TIMEOUT": "12"})
    assert default.returncode == 0, default.stderr
    timeout, transport, soft, hard, lease = json.loads(default.stdout)
    assert timeout == 12.0 and transport["visibility_timeout"] == 3600
    assert soft < hard < lease, "a claim's lease outlives the task's hard time limit"
    custom = run({"EMAIL_URL": "smtp://mail.example.com:587/?timeout=7", "CELERY_VISIBILITY_TIMEOUT": "900",
                  "CELERY_BROKER_TRANSPORT_OPTIONS": '{"max_connections": 20}'})  # fmt: skip
    assert custom.returncode == 0, custom.stderr
    timeout, transport, *_ = json.loads(custom.stdout)
    assert timeout == 7.0
    assert transport["visibility_timeout"] == 900 and transport["max_connections"] == 20
    broken = run({"CXDESK_OUTBOX_LEASE": "60", "CELERY_TASK_TIME_LIMIT": "120"})
    assert broken.returncode != 0 and "CXDESK_OUTBOX_LEASE" in broken.stderr


@pytest.mark.django_db
def test_postgresql_binds_parameters_and_keeps_a_frequent_statement_prepared():
    """DB_SERVER_SIDE_BINDING (on by default): the server binds the parameters, and a
    statement run often on a connection is prepared once, not planned on every run."""
    from django.db import connection

    from tickets.models import Ticket

    if connection.vendor != "postgresql":
        assert os.environ.get("CI") != "true", "CI runs the suite on PostgreSQL"
        pytest.skip("PostgreSQL only")
    assert connection.features.uses_server_side_binding
    for pk in range(8):
        list(Ticket.objects.filter(pk=pk, customer_id=pk).values_list("id", flat=True))
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        prepared = [row[0] for row in cursor.fetchall()]
    assert any('FROM "tickets_ticket"' in sql and "$1" in sql for sql in prepared), prepared
