from rest_framework import authentication, exceptions, permissions

from .services import api_key_authenticate
from .throttling import client_ident, key_guess_failed, key_guess_wait


class BearerKeyAuthentication(authentication.BaseAuthentication):
    """`Authorization: Bearer cxk_…`: the request acts as the key's user."""

    keyword = "Bearer"

    def authenticate(self, request):
        header = authentication.get_authorization_header(request).decode("latin-1")
        if not header:
            return None
        scheme, _, key = header.partition(" ")
        if scheme.lower() != "bearer":
            return None
        key = key.strip()
        if not key:
            raise exceptions.AuthenticationFailed("empty bearer token")
        ident = client_ident(request)
        wait = key_guess_wait(ident)
        if wait is not None:
            raise exceptions.Throttled(wait=wait, detail="too many unknown API keys from this address.")
        record = api_key_authenticate(key)
        if record is None:
            key_guess_failed(ident)
            raise exceptions.AuthenticationFailed("unknown or revoked API key")
        return record.user, record

    def authenticate_header(self, request):
        return 'Bearer realm="cxdesk"'


class IsAgent(permissions.BasePermission):
    """Staff users (agents) only; a read-scope key may only read."""

    message = "only agents (staff users) can use the API"

    def has_permission(self, request, view):
        user = request.user
        if not (user and user.is_authenticated and user.is_active and user.is_staff):
            return False
        key = request.auth
        if (
            key is not None
            and hasattr(key, "scope")
            and key.scope == "read"
            and request.method not in permissions.SAFE_METHODS
        ):
            self.message = "this API key is read-only"
            return False
        return True
