"""Project-wide request/response guards.

`InputCleaningMiddleware` — the one input-cleaning layer: a NUL byte, invalid UTF-8 or a
lone surrogate in the query string, a form field or a JSON body is a 400 (the API's error
shape under /api/ and /hooks/, a plain page elsewhere) before any view, form or query sees
it. PostgreSQL cannot store NUL in text, so without this every view that filters or saves
such a value would answer 500.

`ContentSecurityPolicyMiddleware` — a strict Content-Security-Policy on every response
(settings.CXDESK_CSP); a view may set its own header (the API docs do).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from urllib.parse import parse_qsl

from django.conf import settings
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse
from django.http.multipartparser import MultiPartParserError
from django.utils.html import escape

from cxdesk.compiled import Statement, Statements

log = logging.getLogger("cxdesk.input")

MAX_REPORTED_NAME = 60


class MalformedInput(ValueError):
    def __init__(self, field: str, problem: str):
        super().__init__(problem)
        self.field = field[:MAX_REPORTED_NAME]
        self.problem = problem


def _check_text(field: str, value: str) -> None:
    if "\x00" in value:
        raise MalformedInput(field, "contains a NUL byte")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise MalformedInput(field, "contains an invalid character (a lone surrogate)") from None


def _check_pairs(raw: bytes | str, where: str) -> None:
    if isinstance(raw, bytes):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise MalformedInput(where, "is not valid UTF-8") from None
    try:
        pairs = parse_qsl(raw, keep_blank_values=True, encoding="utf-8", errors="strict")
    except UnicodeDecodeError:
        raise MalformedInput(where, "is not valid UTF-8") from None
    except ValueError:
        return  # more fields than Django allows: Django answers that itself
    for key, value in pairs:
        _check_text(key, key)
        _check_text(key, value)


def check_json(value, path: str = "") -> None:
    """Raise MalformedInput for a NUL byte or lone surrogate anywhere in decoded JSON."""
    if isinstance(value, str):
        _check_text(path or "body", value)
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_text(f"{path}.{key}" if path else str(key), str(key))
            check_json(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            check_json(item, f"{path}[{i}]" if path else f"[{i}]")


def check_request(request: HttpRequest) -> None:
    """Raise MalformedInput for input no view should ever receive."""
    if "\x00" in request.path:
        raise MalformedInput("path", "contains a NUL byte")
    query = request.META.get("QUERY_STRING", "")
    if query:
        # WSGI hands the query over as latin-1-decoded text; back to bytes, then strict UTF-8.
        try:
            raw = query.encode("latin-1")
        except UnicodeEncodeError:  # ASGI servers hand it over already decoded
            raw = query.encode("utf-8", "surrogateescape")
        _check_pairs(raw, "query string")
    if request.method not in ("POST", "PUT", "PATCH", "DELETE"):
        return
    if any(request.path.startswith(p) for p in settings.CXDESK_RAW_BODY_PATHS):
        return  # raw content (mail) is data there; its parser deals with it
    content_type = request.META.get("CONTENT_TYPE", "").split(";")[0].strip().lower()
    if content_type == "application/x-www-form-urlencoded":
        _check_pairs(request.body, "form")
    elif content_type == "multipart/form-data":
        try:
            fields, files = request.POST, request.FILES
        except MultiPartParserError:
            raise MalformedInput("form", "is not a valid multipart form") from None
        for key, values in fields.lists():
            _check_text(key, key)
            for value in values:
                _check_text(key, value)
        for key, uploads in files.lists():
            for upload in uploads:
                _check_text(key, upload.name or "")
    elif content_type == "application/json" or content_type.endswith("+json"):
        if not request.body:
            return
        try:
            data = json.loads(request.body)
        except UnicodeDecodeError:
            raise MalformedInput("body", "is not valid UTF-8") from None
        except ValueError:
            return  # not JSON at all: the view's parser answers with its own 400
        check_json(data)


def wants_json(request: HttpRequest) -> bool:
    return request.path.startswith(("/api/", "/hooks/"))


class InputCleaningMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        try:
            check_request(request)
        except MalformedInput as exc:
            log.info("malformed input refused on %s: %s %s", request.path[:200], exc.field, exc.problem)
            message = f"{exc.field} {exc.problem}"
            if wants_json(request):
                return JsonResponse(
                    {"error": {"code": "malformed_input", "message": message, "fields": {exc.field: [exc.problem]}}},
                    status=400,
                )
            return HttpResponseBadRequest(
                f"<!doctype html><title>Bad request</title><h1>Bad request</h1><p>{escape(message)}.</p>"
            )
        return self.get_response(request)


class ContentSecurityPolicyMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        response = self.get_response(request)
        if settings.CXDESK_CSP and "Content-Security-Policy" not in response:
            response["Content-Security-Policy"] = settings.CXDESK_CSP
        return response


class DeskUserMiddleware:
    """Every desk page asks four things of the signed-in staff member besides who they are:
    their desk language (`accounts.middleware.StaffLanguageMiddleware`), their role (team
    scoping, `accounts.roles.user_role`), their routing status (the header's status switch)
    and the bell's unread count (`tickets.notifications.notifications_unread_count`). Read
    here in one query, always fresh, instead of four. Placed after AuthenticationMiddleware
    and before StaffLanguageMiddleware; desk pages only."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]):
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        user = getattr(request, "user", None)
        if (
            request.path_info.startswith("/desk/")
            and user is not None
            and user.is_authenticated
            and user.is_staff
            and user.is_active
        ):
            unread = desk_user_preload(user)
            if unread is not None:
                from tickets.notifications import unread_count_preloaded

                # Forgotten by the first statement of this request that writes a notification
                # (marking read, a new one): the bell then counts again.
                with unread_count_preloaded(user_id=user.pk, count=unread):
                    return self.get_response(request)
        return self.get_response(request)


# The statement per user, compiled once per process: building three subqueries through the
# ORM cost more than running them (the values differ by user only; roles are constants).
_desk_user_statements = Statements(size=2000)


def _desk_user_statement(user_id: int, alias: str) -> Statement:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group
    from django.db.models import Count, OuterRef, Subquery

    from accounts.models import StaffProfile
    from accounts.roles import ROLES, role_rank_case
    from routing.models import AgentProfile
    from tickets.models import Notification

    qs = (
        get_user_model()
        .objects.using(alias)
        .filter(pk=user_id)
        .annotate(
            desk_language=Subquery(StaffProfile.objects.filter(user=OuterRef("pk")).values("language")[:1]),
            desk_role=Subquery(
                Group.objects.filter(user=OuterRef("pk"), name__in=ROLES)
                .annotate(rank=role_rank_case())
                .order_by("-rank")
                .values("name")[:1]
            ),
            desk_agent_status=Subquery(AgentProfile.objects.filter(user=OuterRef("pk")).values("status")[:1]),
            # The bell: one COUNT on the (user, read_at) index; no row when there is none.
            desk_unread=Subquery(
                Notification.objects.filter(user=OuterRef("pk"), read_at=None)
                .order_by()
                .values("user")
                .annotate(n=Count("pk"))
                .values("n")
            ),
        )
        .values_list("desk_language", "desk_role", "desk_agent_status", "desk_unread")
        .order_by()
    )
    return Statement.of(qs)


def desk_user_preload(user) -> int | None:
    """Set `user.desk_language`, `user.desk_agent_status` and the role `user_role` reads, in
    one query of subqueries, and return the user's unread notifications count read by the
    same query (None: no such user)."""
    from django.db import router

    from accounts.roles import role_remember

    alias = router.db_for_read(type(user))
    row = _desk_user_statements.get((user.pk, alias), lambda: _desk_user_statement(user.pk, alias)).row()
    if row is None:
        return None
    language, role, status, unread = row
    user.desk_language = language or ""
    user.desk_agent_status = status or ""
    role_remember(user, role)
    return int(unread or 0)
