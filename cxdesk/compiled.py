"""A queryset compiled to SQL once per process, then run with new values (issue 12).

Building and compiling a queryset costs Django more than PostgreSQL spends running a lookup
by a unique key: `Identity.objects.select_related("customer").filter(kind=…, address=…)
.first()` took 1.2 ms of Python and 0.1 ms of database here. A `Compiled` builds its
queryset once per database alias with a marker in place of each parameter, keeps the SQL,
where the markers landed among its parameters, the compiler's row converters and its
`select_related` layout, and from then on only executes the statement and builds the
instances, as Django's ModelIterable would.

The parameters are text: each marker must come through the field's preparation unchanged
and land exactly once among the statement's parameters (checked as it is compiled). The
statement depends on nothing else: a queryset that reads the clock, the settings or the
current user must not be kept this way."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django.db import connections
from django.db.models import Model, QuerySet
from django.db.models.query import get_related_populators


class Compiled:
    """`build(**markers)` → a queryset of model instances (select_related allowed), compiled
    once per alias; `first(**values)` runs it with `values` in the markers' places."""

    def __init__(self, build: Callable[..., QuerySet], *names: str) -> None:
        self._build = build
        self._names = names
        self._by_alias: dict[str, tuple] = {}

    def _compile(self, alias: str) -> tuple:
        markers = {name: f"\x00cxdesk-compiled-{name}\x00" for name in self._names}
        qs = self._build(**markers).using(alias)
        qs = (qs if qs.ordered else qs.order_by("pk"))[:1]  # as `first()` reads it
        compiler = qs.query.get_compiler(alias)
        sql, params = compiler.as_sql()
        params = list(params)
        slots = {}
        for name, marker in markers.items():
            found = [i for i, value in enumerate(params) if value == marker]
            if len(found) != 1:
                raise ValueError(f"parameter {name!r} lands {len(found)} times in the statement, not once")
            slots[name] = found[0]
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
            params[slots[name]] = value
        connection = connections[using]
        with connection.cursor() as cursor:
            cursor.execute(sql, params)
            row: Any = cursor.fetchone()
        if row is None:
            return None
        if converters:  # as the compiler's apply_converters, with this thread's connection
            row = list(row)
            for pos, (convs, expression) in converters:
                for converter in convs:
                    row[pos] = converter(row[pos], expression, connection)
        obj = model.from_db(using, init_list, row[start:end])
        for populator in populators:
            populator.populate(row, obj)
        return obj
