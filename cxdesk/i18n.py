"""Languages: the one place that decides which language a person is addressed in.

- `resolve_language(code)`: a language the desk has, by the fallback chain
  exact code → its base language (pt-br → pt) → settings.LANGUAGE_CODE.
- `in_language(code)`: render or gettext inside `with in_language(...)`.
- `customer_language(customer)` / `for_customer(customer)`: automatic messages (sign-in
  links and codes, acknowledgements, surveys, SLA notices) go out in the customer's language.
- `agent_language(user_id)`: the desk language an agent picked (their profile), for text
  produced outside a request (websocket fragments, bell notifications)."""

from __future__ import annotations

from contextlib import contextmanager

from django.conf import settings
from django.utils import translation


def supported() -> list[str]:
    return [code for code, _name in settings.LANGUAGES]


def resolve_language(code: str | None) -> str:
    """`code` if the desk speaks it, else its base language, else the default."""
    code = (code or "").strip().replace("_", "-").lower()
    languages = supported()
    if code in languages:
        return code
    base = code.split("-")[0]
    if base in languages:
        return base
    return settings.LANGUAGE_CODE


def clean_language(code: str | None) -> str:
    """A language code from outside (a header, a provider, a form) as stored on a person:
    one we speak, or "" when we do not (so the default applies)."""
    code = (code or "").strip().replace("_", "-").lower()
    if not code:
        return ""
    resolved = resolve_language(code)
    if resolved == settings.LANGUAGE_CODE and code.split("-")[0] != settings.LANGUAGE_CODE.split("-")[0]:
        return ""
    return resolved


def first_accepted(header: str | None) -> str:
    """The first language of an Accept-Language / Content-Language header that we speak."""
    for part in (header or "").split(","):
        code = clean_language(part.split(";")[0])
        if code:
            return code
    return ""


@contextmanager
def in_language(code: str | None):
    with translation.override(resolve_language(code)):
        yield


def customer_language(customer) -> str:
    return resolve_language(getattr(customer, "language", "") if customer is not None else "")


def for_customer(customer):
    """`with for_customer(ticket.customer): body = _("…")` — the customer's language."""
    return in_language(customer_language(customer))


def agent_language_code(user_id: int | None) -> str:
    if not user_id:
        return settings.LANGUAGE_CODE
    from accounts.models import StaffProfile

    code = StaffProfile.objects.filter(user_id=user_id).values_list("language", flat=True).first()
    return resolve_language(code)


def agent_language(user_id: int | None):
    """`with agent_language(user.pk): …` — the agent's desk language."""
    return in_language(agent_language_code(user_id))


def language_chosen(request, response, code: str):
    """A language switcher's answer: the choice sticks in the language cookie (read by
    LocaleMiddleware on every later request); `code` "" clears it."""
    if code:
        response.set_cookie(
            settings.LANGUAGE_COOKIE_NAME,
            code,
            max_age=settings.LANGUAGE_COOKIE_AGE,
            samesite=settings.LANGUAGE_COOKIE_SAMESITE,
            secure=request.is_secure(),
            httponly=False,
        )
    else:
        response.delete_cookie(settings.LANGUAGE_COOKIE_NAME, samesite=settings.LANGUAGE_COOKIE_SAMESITE)
    return response


def safe_next(request, default: str) -> str:
    from django.utils.http import url_has_allowed_host_and_scheme

    target = request.POST.get("next") or request.GET.get("next") or ""
    if target and url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
        return target
    return default


def language_from_scope(scope) -> str:
    """The language a websocket handshake asks for: the language cookie, else Accept-Language."""
    from http.cookies import SimpleCookie

    headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers") or []}
    cookie = SimpleCookie()
    try:
        cookie.load(headers.get("cookie", ""))
    except Exception:  # a malformed Cookie header: ignore it
        cookie = SimpleCookie()
    chosen = cookie.get(settings.LANGUAGE_COOKIE_NAME)
    return clean_language(chosen.value if chosen else "") or first_accepted(headers.get("accept-language"))


def agent_language_for_scope(user_id: int | None, scope) -> str:
    """The desk language for a socket: the agent's profile, else what the browser asks for."""
    from accounts.models import StaffProfile

    code = StaffProfile.objects.filter(user_id=user_id).values_list("language", flat=True).first() if user_id else ""
    return resolve_language(code or language_from_scope(scope))


def pick_translation(original, language: str | None, translations):
    """Of an original and its translations (objects with `.language`), the one for
    `language` by the fallback chain (exact, then base language), else the original."""
    wanted = (language or "").lower()
    if not wanted:
        return original
    candidates = [original, *translations]
    for match in (wanted, wanted.split("-")[0]):
        for item in candidates:
            if (item.language or settings.LANGUAGE_CODE).lower() == match:
                return item
    for item in candidates:  # pt-br asked, pt-pt written: the same base language
        if (item.language or settings.LANGUAGE_CODE).lower().split("-")[0] == wanted.split("-")[0]:
            return item
    return original


def language_name(code: str) -> str:
    """A language's name in itself ("Русский"), or the code when Django does not know it."""
    try:
        return translation.get_language_info(code)["name_local"]
    except KeyError:
        return code
