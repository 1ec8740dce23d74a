"""Request ids and structured logs.

Every HTTP request gets an id: the proxy's `X-Request-ID` (nginx sets one when the client
did not) if it looks sane, else a fresh one. It is echoed in the response header, put on
every log line written while the request runs (`request_id`), sent with every Celery task
queued by that request (a message header) and restored in the worker while the task runs,
so one id follows a webhook from the proxy's access log through Django to the worker that
sends the reply. Logs are one JSON object per line (`LOG_FORMAT=json`).
"""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import re
import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

from django.http import HttpRequest, HttpResponse

HEADER = "X-Request-ID"
CELERY_HEADER = "cxdesk_request_id"
_VALID = re.compile(r"^[A-Za-z0-9._:-]{8,64}$")

request_id_var: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="-")


def get_request_id() -> str:
    return request_id_var.get()


@contextlib.contextmanager
def request_id_scope(request_id: str) -> Iterator[None]:
    """Log lines written in the block carry `request_id` (work done later for a request:
    a stored webhook delivery taken by a drainer)."""
    token = request_id_var.set(request_id if _VALID.match(request_id) else "-")
    try:
        yield
    finally:
        request_id_var.reset(token)


def new_request_id() -> str:
    return uuid.uuid4().hex


class RequestIdMiddleware:
    """Outermost middleware: sets the request id for the request's logs and tasks."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        incoming = request.headers.get(HEADER, "")
        request_id = incoming if _VALID.match(incoming) else new_request_id()
        request.request_id = request_id  # type: ignore[attr-defined]
        token = request_id_var.set(request_id)
        try:
            response = self.get_response(request)
        finally:
            request_id_var.reset(token)
        response[HEADER] = request_id
        return response


class RequestIdFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = request_id_var.get()
        return True


_STANDARD = set(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime", "request_id"}


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id, task fields,
    extra fields passed with `extra=`, and the exception text if any."""

    def format(self, record: logging.LogRecord) -> str:
        data: dict = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", request_id_var.get()),
        }
        task = _current_task()
        if task is not None:
            data["task"] = task.name
            data["task_id"] = task.request.id
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_") and key not in data:
                data[key] = value if isinstance(value, str | int | float | bool | None) else repr(value)
        if record.exc_info:
            data["exc"] = self.formatException(record.exc_info)
        return json.dumps(data, ensure_ascii=False)


def _current_task():
    try:
        from celery import current_task
    except ImportError:  # pragma: no cover - celery is a dependency
        return None
    task = current_task
    if task is None or not getattr(task, "request", None) or task.request.id is None:
        return None
    return task


# --- Celery: carry the id in a message header -----------------------------------------------


def _before_publish(headers: dict | None = None, **kwargs) -> None:
    request_id = request_id_var.get()
    if headers is not None and request_id != "-" and CELERY_HEADER not in headers:
        headers[CELERY_HEADER] = request_id


def task_request_id(task) -> str | None:
    request = getattr(task, "request", None)
    if request is None:
        return None
    value = getattr(request, CELERY_HEADER, None)
    if value is None:
        value = (getattr(request, "headers", None) or {}).get(CELERY_HEADER)
    return value if isinstance(value, str) and _VALID.match(value) else None


_tokens: dict[str, contextvars.Token] = {}


def _task_prerun(task_id: str | None = None, task=None, **kwargs) -> None:
    request_id = task_request_id(task) or f"task-{task_id}"
    if task_id:
        _tokens[task_id] = request_id_var.set(request_id)
    # One line per task run carrying the request id: grep the id, find the worker's work.
    logging.getLogger("cxdesk.tasks").info("task %s started", getattr(task, "name", "?"))


def _task_postrun(task_id: str | None = None, **kwargs) -> None:
    token = _tokens.pop(task_id or "", None)
    if token is not None:
        try:
            request_id_var.reset(token)
        except ValueError:  # set in another context (threads pool): just clear
            request_id_var.set("-")


def connect_celery_signals() -> None:
    from celery.signals import before_task_publish, task_postrun, task_prerun

    before_task_publish.connect(_before_publish, weak=False, dispatch_uid="cxdesk-request-id-publish")
    task_prerun.connect(_task_prerun, weak=False, dispatch_uid="cxdesk-request-id-prerun")
    task_postrun.connect(_task_postrun, weak=False, dispatch_uid="cxdesk-request-id-postrun")
