"""Browser tests: a live ASGI server (daphne) in a subprocess on the test database, and
Debian's Chromium driven by Playwright. With CI=true a missing browser fails the run."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
# The README's screenshots are refreshed with CXDESK_UPDATE_SCREENSHOTS=1; otherwise they go
# to a temporary folder, so a test run leaves the tree clean.
SCREENSHOTS = (
    ROOT / "docs" / "screenshots"
    if os.environ.get("CXDESK_UPDATE_SCREENSHOTS")
    else Path(os.environ.get("TMPDIR", "/tmp")) / "cxdesk-screenshots"
)


def _missing(reason: str):
    if os.environ.get("CI") == "true":
        pytest.fail(f"browser tests need this in CI: {reason}")
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def live_server_url(transactional_db, tmp_path, settings):
    from django.db import connection

    if connection.vendor != "postgresql":
        _missing("browser tests run against PostgreSQL (set DATABASE_URL)")
    db = settings.DATABASES["default"]
    port = _free_port()
    env = {
        **os.environ,
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}",
        "SECRET_KEY": settings.SECRET_KEY,
        "DEBUG": "0",
        "ALLOWED_HOSTS": "127.0.0.1,localhost",
        "PUBLIC_URL": f"http://127.0.0.1:{port}",
        "CELERY_TASK_ALWAYS_EAGER": "1",
        "CXDESK_VAR_DIR": str(tmp_path / "server-var"),
        "MEDIA_ROOT": str(tmp_path / "media"),
        "EMAIL_BACKEND": "django.core.mail.backends.filebased.EmailBackend",
        "EMAIL_FILE_PATH": str(tmp_path / "mail"),
        "PYTHONPATH": str(ROOT),
    }
    log = (tmp_path / "server.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "daphne", "-b", "127.0.0.1", "-p", str(port), "cxdesk.asgi:application"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), 0.5).close()
            break
        except OSError:
            if proc.poll() is not None:
                raise RuntimeError((tmp_path / "server.log").read_text()[-3000:]) from None
            time.sleep(0.2)
    yield f"http://127.0.0.1:{port}"
    proc.terminate()
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()


@pytest.fixture
def browser():
    if not Path(CHROMIUM).exists():
        _missing(f"{CHROMIUM} is missing (apt-get install -y chromium)")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "1"  # Playwright's sync API runs an event loop in this thread
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(
            executable_path=CHROMIUM,
            args=["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                  "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"],
        )  # fmt: skip
        yield b
        b.close()


def sign_in(browser, base: str, username: str, password: str = "pw"):
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    page = context.new_page()
    page.set_default_timeout(10_000)
    page.goto(f"{base}/desk/sign-in/?next=/desk/")
    page.fill("input[name=username]", username)
    page.fill("input[name=password]", password)
    page.click("button[type=submit]")
    page.wait_for_url(f"{base}/desk/")
    return page


def wait_js(page, expression: str, timeout: float = 10.0) -> None:
    """Wait until a JS expression is truthy. Playwright's wait_for_function compiles its
    predicate with eval, which the page's Content-Security-Policy (rightly) forbids;
    page.evaluate goes through the DevTools protocol and is not subject to it."""
    deadline = time.monotonic() + timeout
    while not page.evaluate(expression):
        if time.monotonic() > deadline:
            raise AssertionError(f"still false after {timeout}s: {expression}")
        page.wait_for_timeout(100)
