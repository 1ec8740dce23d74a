"""Lookups of our own: `InConstants` and `AnyOf` (below).

`InConstants(F("status"), ("new", "open"))` is `status IN ('new', 'open')` with the values
written into the SQL instead of bound as parameters. PostgreSQL prepares a statement run
often (psycopg's `prepare_threshold`, cxdesk/settings.py) and then runs it with a generic
plan, one that holds for any parameters. A partial index whose condition names those values
(the inbox's, `status IN ('new', 'open', 'pending')`) serves a generic plan only if the
statement says the same values itself: with `IN ($1, $2, $3)` PostgreSQL cannot tell the
index applies, so it planned the inbox list anew on every run (0 generic plans in 46 runs;
planning 0.7 ms against 0.6 ms of execution at 100k tickets).

Only for the code's own constants: a value that is not a plain word is refused."""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Any

from django.db.models import Expression, Lookup

_WORD = re.compile(r"[A-Za-z0-9_]+")


class InConstants(Lookup):
    lookup_name = "in_constants"
    prepare_rhs = False

    def __init__(self, lhs: Expression, rhs: Iterable[Any]) -> None:
        values = tuple(str(value) for value in rhs)
        if not values or not all(_WORD.fullmatch(value) for value in values):
            raise ValueError(f"InConstants takes plain words, not {values!r}")
        super().__init__(lhs, values)

    def as_sql(self, compiler: Any, connection: Any) -> tuple[str, list[Any]]:
        lhs_sql, params = self.process_lhs(compiler, connection)
        literals = ", ".join(f"'{value}'" for value in self.rhs)
        return f"{lhs_sql} IN ({literals})", list(params)


class AnyOf(Lookup):
    """`lhs = ANY(%s)` with the values as ONE array parameter on PostgreSQL, so the
    statement's text and parameter count are the same for any number of values (it can be
    compiled once and run with another list: `cxdesk.compiled`); `lhs IN (%s, …)` elsewhere."""

    lookup_name = "any_of"
    prepare_rhs = False

    def as_sql(self, compiler: Any, connection: Any) -> tuple[str, list[Any]]:
        lhs_sql, params = self.process_lhs(compiler, connection)
        values = list(self.rhs)
        if not values:
            return "1 = 0", []
        return f"{lhs_sql} IN ({', '.join(['%s'] * len(values))})", [*params, *values]

    def as_postgresql(self, compiler: Any, connection: Any) -> tuple[str, list[Any]]:
        lhs_sql, params = self.process_lhs(compiler, connection)
        return f"{lhs_sql} = ANY(%s)", [*params, self.rhs]
