"""Production settings pass `check --deploy` with no warnings, and send the security headers."""

import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
from django.test import Client

ROOT = Path(__file__).resolve().parents[2]
DROP = {
    "DJANGO_ALLOW_ASYNC_UNSAFE",
    "SECRET_KEY",
    "DEBUG",
    "ALLOWED_HOSTS",
    "PUBLIC_URL",
    "SECURE_SSL_REDIRECT",
    "SECURE_HSTS_SECONDS",
}


def _production_env(tmp_path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in DROP and not k.startswith("PYTEST")}
    return {
        **env,
        "DJANGO_SETTINGS_MODULE": "cxdesk.settings",
        "DEBUG": "0",
        "SECRET_KEY": secrets.token_urlsafe(60),
        "ALLOWED_HOSTS": "desk.example.com",
        "PUBLIC_URL": "https://desk.example.com",
        "CXDESK_VAR_DIR": str(tmp_path / "var"),
    }


def test_production_settings_pass_check_deploy_without_warnings(tmp_path):
    env = _production_env(tmp_path)
    script = (
        "import django; django.setup(); from django.core.management import call_command; "
        "call_command('check', deploy=True, fail_level='WARNING'); from django.conf import settings as s; "
        "print(s.SECURE_HSTS_SECONDS, s.SESSION_COOKIE_SECURE, s.CSRF_COOKIE_SECURE, s.SECURE_SSL_REDIRECT, "
        "s.SECURE_PROXY_SSL_HEADER)"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout + done.stderr
    assert "WARNINGS:" not in out and "ERRORS:" not in out, out  # infos (e.g. no ESP secret set) are fine
    assert done.stdout.strip().splitlines()[-1].split(None, 4) == [
        "31536000",
        "True",
        "True",
        "True",
        "('HTTP_X_FORWARDED_PROTO', 'https')",
    ]


@pytest.mark.django_db
@pytest.mark.parametrize("path", ["/desk/", "/portal/", "/kb/", "/api/v1/tickets/", "/no-such-page/", "/healthz"])
def test_every_response_carries_the_strict_policy(path):
    answer = Client().get(path)
    csp = answer["Content-Security-Policy"]
    for directive in (
        "default-src 'self'",
        "script-src 'self';",
        "style-src 'self';",
        "img-src 'self' data:",
        "frame-ancestors 'none'",
        "object-src 'none'",
        "base-uri 'none'",
    ):
        assert directive in csp, (path, directive)
    assert "unsafe-inline" not in csp and "unsafe-eval" not in csp
    assert answer["X-Content-Type-Options"] == "nosniff"
    assert answer["X-Frame-Options"] == "DENY"
