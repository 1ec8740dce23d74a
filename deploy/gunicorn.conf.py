"""gunicorn settings for deploy/serve.py (and the container): sync workers, a per-request
timeout, access logs off (the proxy writes them as JSON), Prometheus multiprocess cleanup."""

import os

workers = int(os.environ.get("GUNICORN_WORKERS", "2"))
threads = int(os.environ.get("GUNICORN_THREADS", "1"))
# With GUNICORN_THREADS > 1 gunicorn runs gthread workers, and a gthread worker accepts and
# keeps every connection it is offered: nginx's kept-alive upstream connections pile onto one
# worker, one core for the whole node (the GIL). Holding no more connections than threads,
# each worker takes its share and answers each request on a connection of its own, as the
# default sync workers do (gunicorn then warns that no keep-alive connection can be held).
worker_connections = threads if threads > 1 else 1000
timeout = int(os.environ.get("GUNICORN_TIMEOUT", "60"))
graceful_timeout = int(os.environ.get("GUNICORN_GRACEFUL_TIMEOUT", "20"))
max_requests = int(os.environ.get("GUNICORN_MAX_REQUESTS", "2000"))
max_requests_jitter = 200
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")
accesslog = None
errorlog = "-"


def child_exit(server, worker):
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(worker.pid)
