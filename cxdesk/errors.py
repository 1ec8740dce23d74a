"""The one error type for business rules, and the API's handler for it.

Services raise `ApplicationError(message, code=..., fields=...)`; every entry point
(API, webhooks, desk views, commands) turns it into a clear 4xx for the caller.
"""

from __future__ import annotations

from typing import Any


class ApplicationError(Exception):
    status_code = 400

    def __init__(
        self,
        message: str,
        *,
        code: str = "invalid",
        fields: dict[str, Any] | None = None,
        status: int | None = None,
        extra: dict[str, Any] | None = None,
    ):
        super().__init__(message)
        self.message = message
        self.code = code
        self.fields = fields or {}
        # More machine-readable facts about the error (e.g. {"owner": 12}: who holds an identity).
        self.extra = extra or {}
        if status is not None:
            self.status_code = status

    def as_dict(self) -> dict[str, Any]:
        return {"error": {**self.extra, "code": self.code, "message": self.message, "fields": self.fields}}
