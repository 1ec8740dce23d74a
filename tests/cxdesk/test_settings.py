import os
import subprocess
import sys
from pathlib import Path

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
    assert engine == "django.db.backends.postgresql"
    assert eager == "False"
    assert layer == "channels_redis.core.RedisChannelLayer"
