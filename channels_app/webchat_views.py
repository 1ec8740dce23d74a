"""The widget's HTTP side, for foreign sites: its config (translated strings), and the
fallback transport when websockets are blocked (POST frames, GET poll, POST upload).

Every answer carries CORS headers only for an Origin in the inbox's `allowed_origins`;
any other Origin gets 403. No cookies, no CSRF: the visitor is named by the signed token.
Frames are the same as on the websocket (`channels_app.webchat.dispatch`)."""

from __future__ import annotations

import json

from django.conf import settings
from django.http import FileResponse, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import render
from django.utils import translation
from django.utils.translation import gettext as _
from django.views.decorators.csrf import csrf_exempt

from .adapters.webchat import invitation_rules, origin_allowed, visitor_seen
from .models import Inbox
from .types import InboundAttachment
from .webchat import (
    Session,
    attachment_for_visitor,
    chat_history,
    chat_message_receive,
    dispatch,
    error_frame,
    visitor_from_token,
)

MAX_POST = 64 * 1024


def _inbox(inbox_id: int) -> Inbox | None:
    return Inbox.objects.filter(pk=inbox_id, kind="webchat", is_active=True).first()


def _error(status: int, code: str, message: str, fields: dict | None = None) -> JsonResponse:
    return JsonResponse({"error": {"code": code, "message": message, "fields": fields or {}}}, status=status)


def _cors(response: JsonResponse, origin: str) -> JsonResponse:
    response["Access-Control-Allow-Origin"] = origin
    response["Access-Control-Allow-Methods"] = "GET, POST, OPTIONS"
    response["Access-Control-Allow-Headers"] = "Content-Type"
    response["Access-Control-Max-Age"] = "600"
    response["Vary"] = "Origin"
    return response


def _guard(request: HttpRequest, inbox_id: int) -> tuple[Inbox | None, str, JsonResponse | None]:
    inbox = _inbox(inbox_id)
    if inbox is None:
        return None, "", _error(404, "not_found", "no such chat inbox")
    origin = request.headers.get("Origin", "")
    if not origin and request.headers.get("Sec-Fetch-Site") == "same-origin":
        origin = settings.PUBLIC_URL  # browsers leave Origin off same-origin GETs (the demo page)
    if not origin_allowed(inbox, origin):
        return None, "", _error(403, "origin_refused", "this site is not allowed to use this chat")
    return inbox, origin, None


def _endpoint(methods: tuple[str, ...]):
    def wrap(view):
        @csrf_exempt
        def inner(request: HttpRequest, inbox_id: int) -> JsonResponse:
            inbox, origin, refused = _guard(request, inbox_id)
            if refused is not None:
                return refused
            if request.method == "OPTIONS":
                return _cors(JsonResponse({}), origin)
            if request.method not in methods:
                return _cors(_error(405, "method_not_allowed", f"use {' or '.join(methods)}"), origin)
            return _cors(view(request, inbox), origin)

        return inner

    return wrap


@_endpoint(("GET",))
def config(request: HttpRequest, inbox: Inbox) -> JsonResponse:
    lang = request.GET.get("lang", "")[:8].split("-")[0].lower()
    if lang not in dict(settings.LANGUAGES):
        lang = "en"
    with translation.override(lang):
        strings = {
            "title": _("Chat with us"),
            "open": _("Open chat"),
            "close": _("Close chat"),
            "greeting": inbox.config.get("greeting") or _("Hi! How can we help?"),
            "placeholder": _("Write a message…"),
            "send": _("Send"),
            "name": _("Your name"),
            "email": _("Email or phone"),
            "start": _("Start chat"),
            "anonymous": _("Chat without giving details"),
            "identify": _("Tell us who you are"),
            "code_sent": _("We sent a code to that address. Enter it to continue."),
            "code": _("Code"),
            "verify": _("Confirm"),
            "verified": _("Thanks, you are identified."),
            "linked": _("Thanks, we will reply there too."),
            "typing": _("An agent is typing…"),
            "read": _("Read"),
            "offline": _("No one is available right now. Leave your email and we will answer there."),
            "offline_sent": _("Thanks, we will answer by email. You will also see the answer here."),
            "attach": _("Attach a file"),
            "you": _("You"),
            "agent": _("Support"),
            "new_message": _("New message from support"),
            "error": _("Something went wrong; please try again."),
            "accept": _("Chat now"),
            "dismiss": _("No thanks"),
            "invitation": _("Need a hand? We are here to help."),
            "language": _("Language"),
        }
    return JsonResponse(
        {
            "lang": lang,
            "dir": "rtl" if translation.get_language_info(lang)["bidi"] else "ltr",
            "languages": [[code, name] for code, name in settings.LANGUAGES],
            "prechat": inbox.config.get("prechat", "optional"),
            "offline_after_minutes": int(inbox.config.get("offline_after_minutes", "5")),
            "invitations": [
                {k: r.get(k) for k in ("rule", "url", "seconds", "visits", "message")} for r in invitation_rules(inbox)
            ],
            "max_text": settings.CXDESK_WEBCHAT_MAX_TEXT,
            "max_attachment_bytes": settings.CXDESK_WEBCHAT_MAX_ATTACHMENT_BYTES,
            "attachment_types": settings.CXDESK_WEBCHAT_ATTACHMENT_TYPES,
            "strings": strings,
        }
    )


@_endpoint(("POST",))
def frames(request: HttpRequest, inbox: Inbox) -> JsonResponse:
    """POST {"token"?: …, "frames": [frame, …]} → {"frames": [reply, …]} (at most 10 frames)."""
    if len(request.body) > MAX_POST:
        return _error(413, "too_large", f"at most {MAX_POST} bytes")
    try:
        body = json.loads(request.body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return _error(400, "invalid", "the body is not JSON")
    if not isinstance(body, dict) or not isinstance(body.get("frames"), list) or not 1 <= len(body["frames"]) <= 10:
        return _error(400, "invalid", 'send {"frames": [1–10 frames]}', {"frames": ["required"]})
    session = Session(inbox=inbox)
    token = body.get("token")
    if isinstance(token, str) and token:
        session.visitor = visitor_from_token(inbox=inbox, token=token)
    replies: list[dict] = []
    for frame in body["frames"]:
        replies += dispatch(session, frame)
    if session.visitor is not None:
        visitor_seen(session.visitor.visitor_id)
    return JsonResponse({"frames": replies})


@_endpoint(("GET",))
def poll(request: HttpRequest, inbox: Inbox) -> JsonResponse:
    """GET ?token=…&after=<message id> → the visitor's public messages after that id."""
    visitor = visitor_from_token(inbox=inbox, token=request.GET.get("token", ""))
    if visitor is None:
        return _error(403, "no_session", "unknown or expired visitor token")
    visitor_seen(visitor.visitor_id)
    after = request.GET.get("after", "0")
    if not after.isdecimal():
        return _error(400, "invalid", "after is a message id", {"after": ["invalid"]})
    return JsonResponse({"frames": chat_history(visitor=visitor, after=int(after))})


@_endpoint(("POST",))
def upload(request: HttpRequest, inbox: Inbox) -> JsonResponse:
    """POST multipart: token, client_id, file (and optional text) → the stored message."""
    visitor = visitor_from_token(inbox=inbox, token=request.POST.get("token", ""))
    if visitor is None:
        return _error(403, "no_session", "unknown or expired visitor token")
    upload = request.FILES.get("file")
    if upload is None:
        return _error(400, "invalid", _("Choose a file."), {"file": ["required"]})
    limit = min(settings.CXDESK_WEBCHAT_MAX_ATTACHMENT_BYTES, settings.CXDESK_MAX_ATTACHMENT_BYTES)
    if upload.size > limit:
        return _error(
            413, "attachment_too_large", _("That file is too large (at most %(n)s MB).") % {"n": limit // 1048576}
        )
    content_type = (upload.content_type or "").split(";")[0].strip().lower()
    if content_type not in settings.CXDESK_WEBCHAT_ATTACHMENT_TYPES:
        return _error(415, "attachment_type", _("That kind of file cannot be sent here."), {"file": [content_type]})
    from cxdesk.errors import ApplicationError

    try:
        result = chat_message_receive(
            visitor=visitor,
            text=request.POST.get("text", ""),
            client_id=request.POST.get("client_id", "")[:64],
            attachments=[InboundAttachment(filename=upload.name, content_type=content_type, content=upload.read())],
        )
    except ApplicationError as exc:
        frame = error_frame(exc.code, exc.message, exc.fields)
        return _error(exc.status_code, frame["code"], frame["message"], frame["fields"])
    from .webchat import message_frame

    return JsonResponse({"frames": [message_frame(result.message, visitor)]})


def attachment_file(request: HttpRequest, inbox_id: int, token: str) -> HttpResponse:
    """A file of the visitor's conversation, by the signed link the widget got (no Origin:
    opened as a plain link; the token is the authority)."""
    inbox = _inbox(inbox_id)
    attachment = attachment_for_visitor(inbox=inbox, token=token) if inbox else None
    if attachment is None or not attachment.file:
        return HttpResponse("This link is not valid (or has expired).", status=404, content_type="text/plain")
    response = FileResponse(attachment.file.open("rb"), as_attachment=True, filename=attachment.filename)
    response["X-Content-Type-Options"] = "nosniff"
    return response


def demo_shop(request: HttpRequest, page: str = "") -> HttpResponse:
    """A pretend shop embedding the demo's widget (DEBUG / demo only, see cxdesk/urls.py)."""
    inbox = Inbox.objects.filter(kind="webchat", is_active=True).order_by("pk").first()
    if inbox is None:
        return HttpResponse("Run `python manage.py seed_demo` first.", status=404, content_type="text/plain")
    pages = {"": "Home", "pricing": "Pricing", "orders": "Your orders"}
    if page not in pages:
        return HttpResponse("No such demo page.", status=404, content_type="text/plain")
    return render(request, "demo/shop.html", {"inbox": inbox, "title": pages[page], "pages": pages, "page": page})
