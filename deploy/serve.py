#!/usr/bin/env python3
"""`make serve`: the production shape on one address.

    nginx :8000 ─┬─ /ws/     → uvicorn (ASGI) nodes   127.0.0.1:8201…
                 ├─ /static/ → files in STATIC_ROOT
                 └─ the rest → gunicorn (WSGI) nodes  127.0.0.1:8101…
    Celery workers (queues default, inbound, outbound, webhooks) and one Celery beat.

Starts every process, restarts none: if one exits, everything is stopped and the exit
code says so (a process manager — systemd, compose — restarts the whole). Ctrl-C (SIGINT)
or SIGTERM: gunicorn, uvicorn and the workers finish what they are doing (warm shutdown),
nginx stops, then this exits 0.

    python deploy/serve.py [--listen 127.0.0.1:8000] [--web 1] [--asgi 1] [--workers 1] [--no-beat]

Environment: the app's (SECRET_KEY, DATABASE_URL, REDIS_URL, …; see docs/deploy.md) plus
GUNICORN_WORKERS, CELERY_CONCURRENCY, CXDESK_MAX_BODY (nginx client_max_body_size, 32m),
CXDESK_METRICS_ALLOW (addresses allowed to /metrics, "127.0.0.1 ::1"), CXDESK_NGINX_USER (the
account nginx's workers run as when started by root; it must be able to read STATIC_ROOT). nginx comes from
Debian; it is installed with apt-get if missing (as root).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
QUEUES = "default,inbound,outbound,webhooks"


@dataclass(eq=False)
class Proc:
    name: str
    cmd: list[str]
    env: dict[str, str] = field(default_factory=dict)
    port: int | None = None
    stop_signal: int = signal.SIGTERM
    popen: subprocess.Popen | None = None


def find_nginx(install: bool = True) -> str:
    found = shutil.which("nginx") or ("/usr/sbin/nginx" if Path("/usr/sbin/nginx").exists() else None)
    if found:
        return found
    if install and shutil.which("apt-get") and os.geteuid() == 0:
        print("serve: nginx is missing; installing Debian's nginx-light", file=sys.stderr)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=False, env=env)
        subprocess.run(["apt-get", "install", "-y", "-qq", "nginx-light"], check=True, env=env)
        return find_nginx(install=False)
    raise SystemExit("serve: nginx is not installed. Install it: sudo apt-get install -y nginx-light")


def render_nginx(
    *,
    listen: str,
    wsgi: list[str],
    asgi: list[str],
    run_dir: Path,
    static_root: Path,
    max_body: str = "32m",
    metrics_allow: str = "127.0.0.1 ::1",
    access_log: str = "/dev/stdout",
    worker_processes: int = 1,
) -> str:
    template = (ROOT / "deploy" / "nginx.conf.in").read_text()
    user = os.environ.get("CXDESK_NGINX_USER", "")
    values = {
        # Started as root, nginx's workers run as `nobody` unless told: they must read STATIC_ROOT.
        "USER": f"user {user};\n" if user and os.geteuid() == 0 else "",
        "WORKER_PROCESSES": str(worker_processes),
        "RUN_DIR": str(run_dir),
        "MIME_TYPES": "/etc/nginx/mime.types",
        "ACCESS_LOG": access_log,
        "WSGI_SERVERS": "\n".join(f"        server {a};" for a in wsgi),
        "ASGI_SERVERS": "\n".join(f"        server {a};" for a in asgi),
        "LISTEN": listen,
        "MAX_BODY": max_body,
        "STATIC_ROOT": str(static_root).rstrip("/"),
        "METRICS_ALLOW": "\n".join(f"            allow {a};" for a in metrics_allow.split()),
    }
    values["FORWARDED"] = "\n".join(
        f"            proxy_set_header {name} {value};"
        for name, value in [
            ("Host", "$http_host"),
            ("X-Forwarded-For", "$proxy_add_x_forwarded_for"),
            ("X-Forwarded-Proto", "$scheme"),
            ("X-Forwarded-Host", "$http_host"),
            ("X-Forwarded-Port", "$server_port"),
            ("X-Request-ID", "$cx_request_id"),
        ]
    )
    for key, value in values.items():
        template = template.replace("{{" + key + "}}", value)
    return template


def plan(
    *,
    listen: str = "127.0.0.1:8000",
    web: int = 1,
    asgi: int = 1,
    workers: int = 1,
    beat: bool = True,
    proxy: bool = True,
    internal_base: int = 8100,
    var_dir: Path | None = None,
    python: str = sys.executable,
    worker_pool: str | None = None,
) -> tuple[list[Proc], dict]:
    """The processes of the production shape and their ports (no side effects but mkdir)."""
    var_dir = Path(var_dir or os.environ.get("CXDESK_VAR_DIR") or ROOT / "var")
    run_dir = var_dir / "run"
    run_dir.mkdir(parents=True, exist_ok=True)
    static_root = var_dir / "static"
    common = {
        "CXDESK_VAR_DIR": str(var_dir),
        "PYTHONPATH": str(ROOT),
        # The app servers are reached through the proxy only: trust its X-Forwarded-*.
        "SECURE_PROXY_SSL_HEADER": os.environ.get("SECURE_PROXY_SSL_HEADER", "1"),
        "USE_X_FORWARDED_HOST": os.environ.get("USE_X_FORWARDED_HOST", "1"),
        "USE_X_FORWARDED_PORT": os.environ.get("USE_X_FORWARDED_PORT", "1"),
    }
    procs: list[Proc] = []
    # Containers: CXDESK_BIND_HOST=0.0.0.0 and the proxy's upstreams by service name.
    bind = os.environ.get("CXDESK_BIND_HOST", "127.0.0.1")
    wsgi_ports = [internal_base + 1 + i for i in range(web)]
    asgi_ports = [internal_base + 101 + i for i in range(asgi)]
    for i, port in enumerate(wsgi_ports):
        prom = run_dir / f"prometheus-web{i}"
        procs.append(
            Proc(
                f"web{i}",
                [
                    python,
                    "-m",
                    "gunicorn",
                    "cxdesk.wsgi",
                    "-c",
                    str(ROOT / "deploy" / "gunicorn.conf.py"),
                    "--bind",
                    f"{bind}:{port}",
                    "--name",
                    f"cxdesk-web{i}",
                    "--control-socket",
                    str(run_dir / f"gunicorn-web{i}.ctl"),
                ],
                {**common, "PROMETHEUS_MULTIPROC_DIR": str(prom)},
                port,
            )
        )
    for i, port in enumerate(asgi_ports):
        procs.append(
            Proc(
                f"asgi{i}",
                [
                    python,
                    "-m",
                    "uvicorn",
                    "cxdesk.asgi:application",
                    "--host",
                    bind,
                    "--port",
                    str(port),
                    "--proxy-headers",
                    "--no-access-log",
                    "--ws-max-size",  # websocket frames over 64 KB are refused before Django sees them
                    "65536",
                    "--timeout-graceful-shutdown",
                    "10",
                ],
                dict(common),
                port,
            )
        )
    concurrency = os.environ.get("CELERY_CONCURRENCY", "2")
    for i in range(workers):
        cmd = [
            python,
            "-m",
            "celery",
            "-A",
            "cxdesk",
            "worker",
            "-Q",
            QUEUES,
            "--concurrency",
            concurrency,
            f"--hostname=worker{i}@%h",
            "--loglevel=INFO",
            "--without-gossip",
            "--without-mingle",
        ]
        if worker_pool:
            cmd.append(f"--pool={worker_pool}")
        procs.append(Proc(f"worker{i}", cmd, dict(common)))
    if beat:
        procs.append(
            Proc(
                "beat",
                [
                    python,
                    "-m",
                    "celery",
                    "-A",
                    "cxdesk",
                    "beat",
                    "--loglevel=INFO",
                    "--schedule",
                    str(run_dir / "celerybeat-schedule"),
                ],
                dict(common),
            )
        )
    if proxy:
        conf = run_dir / "nginx.conf"
        conf.write_text(
            render_nginx(
                listen=listen,
                wsgi=os.environ.get("CXDESK_UPSTREAM_WSGI", "").split() or [f"127.0.0.1:{p}" for p in wsgi_ports],
                asgi=os.environ.get("CXDESK_UPSTREAM_ASGI", "").split() or [f"127.0.0.1:{p}" for p in asgi_ports],
                run_dir=run_dir,
                static_root=static_root,
                max_body=os.environ.get("CXDESK_MAX_BODY", "32m"),
                metrics_allow=os.environ.get("CXDESK_METRICS_ALLOW", "127.0.0.1 ::1"),
            )
        )
        procs.insert(
            0, Proc("nginx", [find_nginx(), "-c", str(conf), "-p", str(run_dir)], {}, stop_signal=signal.SIGQUIT)
        )
    info = {"listen": listen, "wsgi": wsgi_ports, "asgi": asgi_ports, "run_dir": str(run_dir), "var_dir": str(var_dir)}
    return procs, info


def prepare(python: str = sys.executable, collectstatic: bool = True) -> None:
    subprocess.run([python, "manage.py", "migrate", "--noinput"], cwd=ROOT, check=True)
    if collectstatic:
        subprocess.run([python, "manage.py", "collectstatic", "--noinput", "-v0"], cwd=ROOT, check=True)


def start(procs: list[Proc], info: dict) -> None:
    run_dir = Path(info["run_dir"])
    for proc in procs:
        prom = proc.env.get("PROMETHEUS_MULTIPROC_DIR")
        if prom:  # stale files from a previous run would be summed in
            shutil.rmtree(prom, ignore_errors=True)
            Path(prom).mkdir(parents=True)
        # Own process group: Ctrl-C reaches this supervisor only, which stops each child in turn.
        proc.popen = subprocess.Popen(proc.cmd, cwd=ROOT, env={**os.environ, **proc.env}, start_new_session=True)
    state = {**info, "pid": os.getpid(), "processes": {p.name: {"pid": p.popen.pid, "port": p.port} for p in procs}}
    (run_dir / "serve.json").write_text(json.dumps(state, indent=2))


def stop(procs: list[Proc], timeout: float = 30.0) -> None:
    for proc in procs:
        if proc.popen and proc.popen.poll() is None:
            try:
                os.killpg(proc.popen.pid, proc.stop_signal)
            except ProcessLookupError:
                pass
    began = time.monotonic()
    deadline = began + timeout
    for proc in procs:
        if not proc.popen:
            continue
        try:
            proc.popen.wait(max(0.1, deadline - time.monotonic()))
            print(
                f"serve: {proc.name} stopped ({proc.popen.returncode}) after {time.monotonic() - began:.1f}s",
                file=sys.stderr,
            )
        except subprocess.TimeoutExpired:
            print(f"serve: {proc.name} did not stop in {timeout:.0f}s; killing it", file=sys.stderr)
            try:
                os.killpg(proc.popen.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            proc.popen.wait()


def supervise(procs: list[Proc], keep_going: bool = False) -> int:
    stopping = {"signal": None}

    def on_signal(signum, frame):
        stopping["signal"] = signum

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    code = 0
    reported: set = set()
    while stopping["signal"] is None:
        dead = [p for p in procs if p.popen and p.popen.poll() is not None and p not in reported]
        if dead:
            for p in dead:
                then = "the others keep running" if keep_going else "stopping everything"
                print(f"serve: {p.name} exited with {p.popen.returncode}; {then}", file=sys.stderr)
            reported.update(dead)
            code = 1
            if not keep_going or len(reported) == len(procs):
                break
        time.sleep(0.3)
    print("serve: stopping (warm shutdown: running requests and tasks finish)", file=sys.stderr)
    stop(procs)
    return code


def exec_role(procs: list[Proc], role: str) -> int:
    """Replace this process by the first process of `role` (signals then reach it directly)."""
    proc = next((p for p in procs if p.name.rstrip("0123456789") == role.replace("proxy", "nginx")), None)
    if proc is None:
        print(f"serve: nothing to run for role {role}", file=sys.stderr)
        return 2
    for key in ("PROMETHEUS_MULTIPROC_DIR",):
        if proc.env.get(key):
            shutil.rmtree(proc.env[key], ignore_errors=True)
            Path(proc.env[key]).mkdir(parents=True)
    os.chdir(ROOT)
    os.execvpe(proc.cmd[0], proc.cmd, {**os.environ, **proc.env})  # noqa: S606
    return 0  # not reached


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--listen", default=os.environ.get("CXDESK_LISTEN", "127.0.0.1:8000"))
    parser.add_argument("--web", type=int, default=int(os.environ.get("CXDESK_WEB_NODES", "1")))
    parser.add_argument("--asgi", type=int, default=int(os.environ.get("CXDESK_ASGI_NODES", "1")))
    parser.add_argument("--workers", type=int, default=int(os.environ.get("CXDESK_WORKER_NODES", "1")))
    parser.add_argument("--internal-base", type=int, default=int(os.environ.get("CXDESK_INTERNAL_BASE", "8100")))
    parser.add_argument("--pool", default=os.environ.get("CELERY_POOL") or None, help="celery pool (prefork, solo…)")
    parser.add_argument("--no-beat", action="store_true", help="run beat elsewhere (exactly one per deployment)")
    parser.add_argument("--no-proxy", action="store_true", help="no nginx (a proxy of your own in front)")
    parser.add_argument(
        "--role",
        choices=["all", "proxy", "web", "asgi", "worker", "beat"],
        default=os.environ.get("CXDESK_ROLE", "all"),
        help="run one part in the foreground, as a container does (same command lines as 'all')",
    )
    parser.add_argument("--keep-going", action="store_true", help="a process that exits does not stop the others")
    parser.add_argument("--skip-setup", action="store_true", help="do not migrate / collectstatic first")
    args = parser.parse_args(argv)
    if not os.environ.get("SECRET_KEY"):
        print("serve: SECRET_KEY is not set (export SECRET_KEY=…; see docs/deploy.md)", file=sys.stderr)
        return 2
    if not os.environ.get("REDIS_URL"):
        print(
            "serve: REDIS_URL is not set; the production shape needs Redis (channel layer, cache, broker)",
            file=sys.stderr,
        )
        return 2
    procs, info = plan(
        listen=args.listen,
        web=args.web,
        asgi=args.asgi,
        workers=args.workers,
        beat=not args.no_beat,
        proxy=not args.no_proxy,
        internal_base=args.internal_base,
        worker_pool=args.pool,
    )
    if args.role != "all":
        return exec_role(procs, args.role)
    if not args.skip_setup:
        prepare()
    start(procs, info)
    print(
        f"serve: cxdesk on http://{args.listen}/ (web {info['wsgi']}, websockets {info['asgi']}); Ctrl-C stops",
        file=sys.stderr,
    )
    return supervise(procs, keep_going=args.keep_going)


if __name__ == "__main__":
    sys.exit(main())
