"""Writes kept until the end of a block inside ONE transaction (a drainer's batch, a chunk of
mail), so that the block writes them together, one statement for many.

Each kept write is a commit hook (`defer`): one kept in a savepoint that rolls back
disappears with it, as its row would have. As the block ends it takes those still standing
(`standing`) and writes them; one it did not take (a bug) reaches its `unwritten` fallback
at commit rather than being lost quietly. Used by the timeline events (`events.batched`),
the tickets' activity (`services.activity_batched`) and new tickets and messages
(`services.rows_batched`)."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from django.db import connection, transaction


class _Pending:
    def __init__(self, scope: object, value: Any, unwritten: Callable[[Any], None]) -> None:
        self.scope, self.value, self.unwritten, self.written = scope, value, unwritten, False

    def __call__(self) -> None:
        if not self.written:
            self.unwritten(self.value)


def defer(scope: object, value: Any, unwritten: Callable[[Any], None]) -> None:
    """Keep `value` for the block `scope` (the caller is inside a transaction)."""
    transaction.on_commit(_Pending(scope, value, unwritten))


def standing(scope: object) -> list:
    """The values kept for `scope` that are still standing, in the order kept; from now on
    they count as written."""
    values = []
    for _sids, hook, _robust in connection.run_on_commit:
        if isinstance(hook, _Pending) and hook.scope is scope and not hook.written:
            hook.written = True
            values.append(hook.value)
    return values


def insert(model: type, fields: Iterable, rows: list, *, returning: bool = False) -> list[int]:
    """One INSERT of these instances' `fields` as they are; with `returning`, their new ids
    (in the rows' order, as `bulk_create` takes them).

    On PostgreSQL the values go as one array per column (`INSERT … SELECT * FROM unnest(…)`):
    the statement's text is the same for any number of rows, so psycopg converts it once (a
    statement of over 50 parameters, as `VALUES (…), (…)` gives a batch, is parsed again by
    psycopg's Python every time: a tenth of a drainer's time) and PostgreSQL prepares and
    plans it once. One row goes as VALUES, as Django's bulk_create sends it too: dumping
    an array per column costs more than the row's own parameters."""
    fields = list(fields)
    qn = connection.ops.quote_name
    target = f"{qn(model._meta.db_table)} ({', '.join(qn(f.column) for f in fields)})"
    returned = f" RETURNING {qn('id')}" if returning else ""
    if connection.vendor == "postgresql" and len(rows) > 1:
        # As Django's bulk_create builds it there: each type without its length (a cast to
        # varchar(n) would cut a longer value short instead of failing on it).
        arrays = ", ".join(f"%s::{field.db_type(connection).split('(')[0]}[]" for field in fields)
        sql = f"INSERT INTO {target} SELECT * FROM unnest({arrays})"  # noqa: S608 - names from the model
        params = [[field.get_db_prep_save(getattr(obj, field.attname), connection) for obj in rows] for field in fields]
    else:
        row = "(" + ", ".join(["%s"] * len(fields)) + ")"
        sql = f"INSERT INTO {target} VALUES {', '.join([row] * len(rows))}"  # noqa: S608 - names from the model
        params = [field.get_db_prep_save(getattr(obj, field.attname), connection) for obj in rows for field in fields]
    with connection.cursor() as cursor:
        cursor.execute(sql + returned, params)
        return [r[0] for r in cursor.fetchall()] if returning else []
