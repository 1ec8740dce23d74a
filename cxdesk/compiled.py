"""Querysets compiled to SQL once per process, then run again (issue 12).

Building and compiling a queryset often costs Django more than PostgreSQL spends running it.
Two ways to keep the work:

- `Statements`: a statement kept under a key that decides its whole text and parameters
  (the inbox's counts and pages, the desk user's row): compiled on the first call with that
  key, run as it is from then on. Bounded; forgotten all at once when full.
- `Compiled`: one statement per database alias, whose parameters change from call to call
  (markers in their places), building model instances as Django would.

`Compiled` in detail. A lookup by a unique key,
`Identity.objects.select_related("customer").filter(kind=…, address=…)
.first()` took 1.2 ms of Python and 0.1 ms of database here. A `Compiled` builds its
queryset once per database alias with a marker in place of each parameter, keeps the SQL,
where the markers landed among its parameters, the compiler's row converters and its
`select_related` layout, and from then on only executes the statement and builds the
instances, as Django's ModelIterable would.

The parameters are text: each marker must come through the field's preparation unchanged
and land exactly once among the statement's parameters (checked as it is compiled). Names
given as `numbers` are integers (ids): their markers are numbers no row has (`STAND_IN`,
downwards), found by value, and may land more than once (an agent's id is in every branch of
an agent's scope); those also given as `optional` may land nowhere (in no supervisor's). The
statement depends on nothing else: a queryset that reads the clock, the settings or the
current user must not be kept this way."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import EmptyResultSet
from django.db import connections
from django.db.models import Model, QuerySet
from django.db.models.query import get_related_populators


def _converted(row: Any, converters: Any, connection: Any) -> Any:
    """`row` (a tuple) with the compiler's converters applied, as its apply_converters does."""
    if not converters:
        return row
    values = list(row)
    for pos, (convs, expression) in converters:
        for converter in convs:
            values[pos] = converter(values[pos], expression, connection)
    return tuple(values)


@dataclass(frozen=True)
class Statement:
    """A compiled statement and what running it needs: its database alias and the row
    converters Django's compiler would apply (e.g. SQLite's datetimes). `sql` is None for a
    queryset that can match nothing (Django raises EmptyResultSet rather than compile it);
    `labels` is whatever its caller keeps with it (the counts' view names)."""

    sql: str | None
    params: tuple
    alias: str
    converters: tuple = ()
    labels: tuple = ()

    @classmethod
    def of(cls, queryset: QuerySet) -> Statement:
        """A `values_list` (or `values`) queryset compiled, with its converters."""
        compiler = queryset.query.get_compiler(queryset.db)
        try:
            sql, params = compiler.as_sql()
        except EmptyResultSet:
            return cls(None, (), queryset.db)
        fields = [column[0] for column in compiler.select[: compiler.col_count]]
        return cls(sql, tuple(params), queryset.db, tuple(compiler.get_converters(fields).items()))

    def with_param(self, index: int, value: Any) -> Statement:
        """The same statement with parameter `index` replaced (a slot found as it was compiled)."""
        params = list(self.params)
        params[index] = value
        return Statement(self.sql, tuple(params), self.alias, self.converters, self.labels)

    def with_values(self, values: dict[int, Any]) -> Statement:
        """The same statement with every parameter equal to a key of `values` replaced by its
        value: a statement compiled for a stand-in (numbers no real row has, see
        `tickets.selectors.inbox_counts`) run for whom it stands for."""
        params = tuple(values.get(p, p) if type(p) is int else p for p in self.params)
        return Statement(self.sql, params, self.alias, self.converters, self.labels)

    def rows(self) -> list:
        """Every row, converted (an empty list for a statement that matches nothing)."""
        if self.sql is None:
            return []
        connection = connections[self.alias]
        with connection.cursor() as cursor:
            cursor.execute(self.sql, list(self.params))
            rows = cursor.fetchall()
        return [_converted(row, self.converters, connection) for row in rows] if self.converters else rows

    def row(self) -> Any:
        """The first row, converted, or None."""
        if self.sql is None:
            return None
        connection = connections[self.alias]
        with connection.cursor() as cursor:
            cursor.execute(self.sql, list(self.params))
            row = cursor.fetchone()
        return None if row is None else _converted(row, self.converters, connection)


class Statements:
    """Statements kept per key, per process. The key must decide the statement's whole text
    and parameters (who asks, their role and teams, the filters…): a statement is reused only
    where the ORM would write the very same one. At most `size` are kept; when full, all are
    forgotten (the keys in use come back at once). A key of None keeps nothing."""

    def __init__(self, size: int = 2000) -> None:
        self.size = size
        self._kept: dict[Hashable, Statement] = {}

    def get(self, key: Hashable | None, build: Callable[[], Statement]) -> Statement:
        statement = self._kept.get(key) if key is not None else None
        if statement is None:
            statement = build()
            if key is not None:
                if len(self._kept) >= self.size:
                    self._kept.clear()
                self._kept[key] = statement
        return statement

    def clear(self) -> None:
        self._kept.clear()

    def __len__(self) -> int:
        return len(self._kept)


STAND_IN = -(2**31) + 1000  # an id no row has: stands for a real one while compiling, and below it


class Compiled:
    """`build(**markers)` → a queryset of model instances (select_related allowed), compiled
    once per alias; `first(**values)` runs it with `values` in the markers' places."""

    def __init__(
        self, build: Callable[..., QuerySet], *names: str, numbers: tuple[str, ...] = (), optional: tuple[str, ...] = ()
    ) -> None:
        self._build = build
        self._names = names
        self._numbers = numbers
        self._optional = optional
        self._by_alias: dict[str, tuple] = {}

    def _compile(self, alias: str) -> tuple:
        markers: dict[str, Any] = {
            name: STAND_IN - 1 - i if name in self._numbers else f"\x00cxdesk-compiled-{name}\x00"
            for i, name in enumerate(self._names)
        }
        qs = self._build(**markers).using(alias)
        qs = (qs if qs.ordered else qs.order_by("pk"))[:1]  # as `first()` reads it
        compiler = qs.query.get_compiler(alias)
        sql, params = compiler.as_sql()
        params = list(params)
        slots = {}
        for name, marker in markers.items():
            found = [i for i, value in enumerate(params) if type(value) is type(marker) and value == marker]
            if (len(found) > 1 and name not in self._numbers) or (not found and name not in self._optional):
                raise ValueError(f"parameter {name!r} lands {len(found)} times in the statement, not once")
            slots[name] = found
        klass_info, select = compiler.klass_info, compiler.select
        fields = klass_info["select_fields"]
        start, end = fields[0], fields[-1] + 1
        compiled = (
            sql,
            params,
            slots,
            list(compiler.get_converters([column[0] for column in select[: compiler.col_count]]).items()),
            klass_info["model"],
            [column[0].target.attname for column in select[start:end]],
            (start, end),
            get_related_populators(klass_info, select, alias),
        )
        self._by_alias[alias] = compiled
        return compiled

    def first(self, *, using: str = "default", **values: str) -> Model | None:
        """The first instance the statement finds with these values, or None."""
        compiled = self._by_alias.get(using) or self._compile(using)
        sql, params, slots, converters, model, init_list, (start, end), populators = compiled
        params = list(params)
        for name, value in values.items():
            for slot in slots[name]:
                params[slot] = value
        connection = connections[using]
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            row: Any = cursor.fetchone()
        if row is None:
            return None
        row = _converted(row, converters, connection)
        obj = model.from_db(using, init_list, row[start:end])
        for populator in populators:
            populator.populate(row, obj)
        return obj
