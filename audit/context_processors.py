from functools import partial

from . import selectors


def audit(request) -> dict:
    """`can_view_audit` for templates (the top bar's "Audit log" link). A callable, so pages
    that never ask do not load the user for it."""
    return {"can_view_audit": partial(_can_view, request)}


def _can_view(request) -> bool:
    return selectors.can_view_audit(getattr(request, "user", None))
