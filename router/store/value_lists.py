"""`one_of(column, values)`: `column IN values` as one statement for any number of values.

SQLAlchemy writes `column.in_(values)` with one placeholder per value, so each length is a
statement of its own, and both drivers keep the statements they prepared per connection (the
sqlite3 module 128 of them, asyncpg 100). Under load the batches' lengths vary from 1 to a few
hundred: each connection filled its cache with large statements and kept preparing new ones,
and the gateway and dispatcher workers grew by megabytes a minute. Here the list is one
parameter, so each query is one statement whatever the length: a JSON array read by
`json_each` on SQLite, an array with `= ANY` on PostgreSQL.

A statement the store runs for every chunk is built once, with `listed(name)` in place of the
values, which are then given when it runs: `conn.execute(STATEMENT, {name: values})`. Building a
`select` and its cache key took about 130 µs each time, and a dispatcher's chunk ran a dozen.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.compiler import compiles
from sqlalchemy.sql.visitors import InternalTraversal


class _ValueList(sa.types.TypeDecorator):
    """A list of values as one parameter: a JSON array (SQLite) or an array (PostgreSQL)."""

    impl = sa.Text
    cache_ok = True

    def load_dialect_impl(self, dialect: sa.Dialect) -> sa.types.TypeEngine[Any]:
        if dialect.name == "postgresql":
            return dialect.type_descriptor(postgresql.ARRAY(sa.Text()))
        return dialect.type_descriptor(sa.Text())

    def process_bind_param(self, value: Any, dialect: sa.Dialect) -> Any:
        return list(value) if dialect.name == "postgresql" else json.dumps(list(value))


_VALUE_LIST = _ValueList()  # one instance for every list: a type is built at some cost


class OneOf(sa.sql.expression.ColumnElement[bool]):
    inherit_cache = True
    type = sa.Boolean()
    _is_implicitly_boolean = True  # a condition as it is: no "= 1" where booleans are integers
    _traverse_internals = [
        ("column", InternalTraversal.dp_clauseelement),
        ("values", InternalTraversal.dp_clauseelement),
    ]

    def __init__(
        self, column: sa.ColumnElement[Any], values: Iterable[Any] | sa.BindParameter[Any]
    ):
        self.column = column
        self.values = (
            values
            if isinstance(values, sa.BindParameter)
            else sa.bindparam(None, list(values), type_=_VALUE_LIST, unique=True)
        )


def one_of(column: sa.ColumnElement[Any], values: Iterable[Any] | sa.BindParameter[Any]) -> OneOf:
    """`column IN values` with the values as one parameter (text values: ids, keys, addresses);
    `values` may be `listed(name)`, given when the statement runs."""
    return OneOf(column, values)


def listed(name: str) -> sa.BindParameter[Any]:
    """A list of values for `one_of`, given under `name` when the statement runs."""
    return sa.bindparam(name, type_=_VALUE_LIST)


@compiles(OneOf)
def _in_json_array(element: OneOf, compiler: Any, **kw: Any) -> str:
    column = compiler.process(element.column, **kw)
    return f"{column} IN (SELECT value FROM json_each({compiler.process(element.values, **kw)}))"


@compiles(OneOf, "postgresql")
def _any_of_array(element: OneOf, compiler: Any, **kw: Any) -> str:
    column = compiler.process(element.column, **kw)
    return f"{column} = ANY({compiler.process(element.values, **kw)})"


def unnest_insert(table: sa.Table, columns: list[sa.Column[Any]], tail: str = "") -> sa.TextClause:
    """PostgreSQL: `INSERT INTO table (columns) SELECT * FROM unnest(...)`, a chunk's rows as one
    array a column (given by `as_arrays`), then `tail` (ON CONFLICT, RETURNING): one statement
    for any number of rows, where asyncpg's executemany binds and runs each row."""
    names = [column.name for column in columns]
    return sa.text(
        f"INSERT INTO {table.name} ({', '.join(names)})"
        f" SELECT * FROM unnest({', '.join(':' + name for name in names)}){tail}"
    ).bindparams(
        *(sa.bindparam(column.name, type_=postgresql.ARRAY(column.type)) for column in columns)
    )


def as_arrays(rows: list[dict[str, Any]]) -> dict[str, list[Any]]:
    """The parameters of an `unnest_insert`: each column's values, the rows in order."""
    return {name: [row[name] for row in rows] for name in rows[0]}
