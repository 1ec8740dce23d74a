"""OpenAPI post-processing: every operation documents the one error shape and the
error statuses any endpoint can answer (the schema describes the real responses)."""

ERROR_SCHEMA = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "fields"],
            "properties": {
                "code": {"type": "string"},
                "message": {"type": "string"},
                "fields": {"type": "object", "additionalProperties": {"type": "array", "items": {"type": "string"}}},
            },
        }
    },
}
ERRORS = {
    "400": "Bad input",
    "401": "Missing, unknown or revoked API key",
    "403": "Not allowed (not an agent, or a read-only key)",
    "404": "Not found (or not visible to you)",
    "405": "Method not allowed",
    "409": "Conflict with the current state",
    "413": "Too large",
    "415": "Unsupported media type",
    "422": "Idempotency-Key reused with a different request",
    "429": "Throttled; see Retry-After",
}


def add_error_responses(result, generator, request, public):
    result.setdefault("components", {}).setdefault("schemas", {})["Error"] = ERROR_SCHEMA
    ref = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
    for path in result.get("paths", {}).values():
        for method, operation in path.items():
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            responses = operation.setdefault("responses", {})
            for code, text in ERRORS.items():
                responses.setdefault(code, {"description": text, "content": ref})
    return result
