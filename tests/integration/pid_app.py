"""A WSGI application that answers with its worker's process id after a short wait: what
tests/integration/test_gunicorn_config.py serves to see which worker took a connection."""

import os
import time


def application(environ, start_response):
    time.sleep(float(environ.get("QUERY_STRING") or 0))
    body = str(os.getpid()).encode()
    start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return [body]
