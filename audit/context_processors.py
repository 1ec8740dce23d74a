from . import selectors


def audit(request) -> dict:
    """`can_view_audit` for templates (the top bar's "Audit log" link)."""
    user = getattr(request, "user", None)
    return {"can_view_audit": selectors.can_view_audit(user)}
