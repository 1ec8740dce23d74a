"""A real ClamAV daemon for tests, with a signature database the test writes itself.

No signature download: one `.ndb` body signature matches the harmless marker string
`MARKER` below. clamd (Debian `clamav-daemon`) is started with a temporary
config on a unix socket and a loopback TCP port; start-up with one signature takes well
under a second. Under CI=true a missing clamd fails the test instead of skipping it.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

MARKER = b"CXDESK-TEST-VIRUS-7f3a9c-not-a-real-virus"
SIGNATURE = "Cxdesk.Test.Marker"
FOUND_NAME = f"{SIGNATURE}.UNOFFICIAL"  # clamd's suffix for signatures outside the official databases
STREAM_MAX = 1024 * 1024


@dataclass
class Clamd:
    socket: str
    host: str
    port: int


def _clamd_binary() -> str | None:
    found = shutil.which("clamd") or ("/usr/sbin/clamd" if Path("/usr/sbin/clamd").exists() else None)
    if found is None and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "install", "-y", "-qq", "clamav-daemon"], env=env, capture_output=True, check=False)  # noqa: S607
        found = shutil.which("clamd") or ("/usr/sbin/clamd" if Path("/usr/sbin/clamd").exists() else None)
    return found


def _missing(reason: str):
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"clamd is required for the scanning tests: {reason} (apt-get install -y clamav-daemon)")
    pytest.skip(reason)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def clamd():
    binary = _clamd_binary()
    if binary is None:
        _missing("clamd is not installed and could not be installed")
    workdir = Path(tempfile.mkdtemp(prefix="cxclamd"))  # short: unix socket paths are limited to ~100 bytes
    (workdir / "cxdesk-test.ndb").write_text(f"{SIGNATURE}:0:*:{MARKER.hex()}\n")
    port = _free_port()
    sock = str(workdir / "clamd.sock")
    (workdir / "clamd.conf").write_text(
        f"DatabaseDirectory {workdir}\nLocalSocket {sock}\nTCPSocket {port}\nTCPAddr 127.0.0.1\n"
        f"Foreground yes\nLogFile {workdir / 'clamd.log'}\nStreamMaxLength {STREAM_MAX}\n"
        "SelfCheck 0\nMaxThreads 2\n"
    )
    proc = subprocess.Popen(  # noqa: S603
        [binary, "-c", str(workdir / "clamd.conf")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 20
    ready = False
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(1)
                s.connect(sock)
                s.sendall(b"zPING\0")
                ready = s.recv(16).startswith(b"PONG")
        except OSError:
            pass
        if ready:
            break
        time.sleep(0.05)
    if not ready:
        proc.kill()
        log = (workdir / "clamd.log").read_text() if (workdir / "clamd.log").exists() else ""
        shutil.rmtree(workdir, ignore_errors=True)
        _missing(f"clamd did not start: {log[-500:]}")
    yield Clamd(socket=sock, host="127.0.0.1", port=port)
    proc.terminate()
    try:
        proc.wait(timeout=2)
    except subprocess.TimeoutExpired:
        proc.kill()
    shutil.rmtree(workdir, ignore_errors=True)


@pytest.fixture
def clamd_settings(clamd, settings):
    settings.CXDESK_SCANNER = "clamd"
    settings.CLAMD_SOCKET = clamd.socket
    return clamd
