"""A filter tree compiled to a SQLite condition over the ``metadata`` JSON column.

SQL NULLs never leak out (a missing field makes a condition false, not unknown), so ``$not``
and ``$ne`` are exact complements. Comparisons are typed with ``json_type``: ``2020`` does not
match the string ``"2020"``, and ``True`` does not match ``1``. ``$contains`` looks one level
into the field as SQLite's ``json_each`` does. Field names and values are bound parameters,
never spliced into SQL text. ``AllOf`` / ``AnyOf`` of any length compile to a balanced tree,
so SQLite's expression depth limit (1000) is never reached.

Examples:
    >>> to_sql({"year": {"$gte": 2021}})[1]
    ['$."year"', '$."year"', 2021]
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from colmax.filters.tree import AllOf, Condition, Node, Not, parse

__all__ = ["Compiled", "to_sql"]

_RANGE = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}

Compiled = tuple[str, list[Any]]


def to_sql(flt: Mapping[str, Any] | Node | None) -> Compiled:
    """``(sql_condition, params)`` of a filter (a dict is parsed first).

    Raises:
        FilterError: the filter dict is malformed (see :func:`colmax.filters.parse_filter`).
    """
    return _compile(parse(flt))


def _compile(node: Node) -> Compiled:
    if isinstance(node, Condition):
        return _condition(node)
    if isinstance(node, Not):
        sql, params = _compile(node.part)
        return f"NOT ({sql})", params
    if not node.parts:
        return ("1" if isinstance(node, AllOf) else "0"), []
    return _join([_compile(p) for p in node.parts], "AND" if isinstance(node, AllOf) else "OR")


def _join(parts: list[Compiled], word: str) -> Compiled:
    """``(a) word (b) word ...`` as a balanced tree: depth log2(n), not n (SQLite's parser
    refuses expressions nested 1000 deep)."""
    if len(parts) == 1:
        return parts[0]
    if len(parts) > 4:
        half = len(parts) // 2
        parts = [_join(parts[:half], word), _join(parts[half:], word)]
    sql = f" {word} ".join(f"({p[0]})" for p in parts)
    return sql, [x for p in parts for x in p[1]]


def _condition(cond: Condition) -> Compiled:
    path, op, value = f'$."{cond.field}"', cond.op, cond.value
    if op == "$eq":
        return _eq(path, value)
    if op == "$ne":
        sql, params = _eq(path, value)
        return f"NOT ({sql})", params
    if op in ("$in", "$nin"):
        if not value:
            return ("0" if op == "$in" else "1"), []
        sql, params = _in(path, list(value))
        return (sql, params) if op == "$in" else (f"NOT ({sql})", params)
    if op == "$contains":
        return (
            "EXISTS (SELECT 1 FROM json_each(metadata, ?) AS e WHERE e.type IN "
            f"({_json_kind(value)}) AND e.value = ?)",
            [path, _sql_value(value)],
        )
    if op == "$exists":
        return (
            "json_type(metadata, ?) IS NOT NULL" if value else "json_type(metadata, ?) IS NULL"
        ), [path]
    kinds = "'text'" if isinstance(value, str) else "'integer','real'"
    return (
        f"COALESCE(json_type(metadata, ?), '') IN ({kinds}) AND json_extract(metadata, ?) {_RANGE[op]} ?",
        [path, path, value],
    )


def _in(path: str, values: list[Any]) -> Compiled:
    """Membership in a list of any length: one condition per JSON type present, with the
    numbers and the strings each bound as one JSON array parameter."""
    parts = [_eq(path, v) for v in (None, True, False) if any(x is v for x in values)]
    numbers = [v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]
    texts = [v for v in values if isinstance(v, str)]
    for group, kinds in ((numbers, "'integer','real'"), (texts, "'text'")):
        if group:
            parts.append(
                (
                    f"COALESCE(json_type(metadata, ?), '') IN ({kinds}) AND "
                    "json_extract(metadata, ?) IN (SELECT value FROM json_each(?))",
                    [path, path, json.dumps(group, ensure_ascii=False)],
                )
            )
    return _join(parts, "OR")


def _eq(path: str, value: Any) -> Compiled:
    if value is None:
        return "COALESCE(json_type(metadata, ?), '') = 'null'", [path]
    return (
        f"COALESCE(json_type(metadata, ?), '') IN ({_json_kind(value)}) AND "
        "json_extract(metadata, ?) = ?",
        [path, path, _sql_value(value)],
    )


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "'true'" if value else "'false'"
    if isinstance(value, (int, float)):
        return "'integer','real'"
    return "'text'"


def _sql_value(value: Any) -> Any:
    return int(value) if isinstance(value, bool) else value
