"""The metadata filter language, compiled to a SQLite condition over JSON metadata.

A filter is a dict::

    {"year": 2024}                                  # equality
    {"year": {"$gte": 2021, "$lt": 2025}}          # several operators on one field are ANDed
    {"lang": {"$in": ["en", "de"]}, "draft": False}  # several fields are ANDed
    {"$or": [{"year": 2020}, {"tags": {"$contains": "news"}}]}

Operators: ``$eq $ne $in $nin $gt $gte $lt $lte`` on scalars (str, int, float, bool, None),
``$contains`` (a JSON array field holds the value), ``$exists`` (bool), and the combinators
``$and`` / ``$or`` (lists of filters) and ``$not`` (one filter).

SQL NULLs never leak out (missing fields make a condition false, not unknown), so
``$not`` and ``$ne`` are exact complements. Comparisons are typed: ``{"year": 2020}`` does not
match the string ``"2020"``, and ``True`` does not match ``1``. A document without the field
never matches ``$eq``/``$in``/ranges and always matches ``$ne``/``$nin`` (they are the
negations). ``$contains`` looks one level into the field as SQLite's ``json_each`` does: an
array's elements, an object's member values, or a scalar field itself (the Qdrant backend
mirrors this). Field names and values are passed to SQLite
as bound parameters, never spliced into SQL text.

Limits: field names of 1 to 512 characters without ``"``, ``\\`` or control characters (SQLite
JSON paths cannot address them portably); strings without NUL (SQLite's JSON functions stop at
it); at most :data:`colmax.limits.MAX_FILTER_CONDITIONS` conditions (one per operator on a
field; a ``$in`` list of any length is one), so that one filter cannot occupy SQLite for long
(each condition is tested on every document); nesting up to 32 levels. ``$and``/``$or`` lists of any length compile to a balanced tree, so SQLite's
expression depth limit (1000) is never reached.

Examples:
    >>> compile_filter({"year": {"$gte": 2021}})[1]
    ['$."year"', '$."year"', 2021]
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

from colmax import limits
from colmax.errors import FilterError

__all__ = ["MAX_PARAMETERS", "OPERATORS", "compile_filter", "count_conditions"]

_RANGE = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<="}
OPERATORS = frozenset({"$eq", "$ne", "$in", "$nin", "$contains", "$exists", *_RANGE})
_COMBINATORS = ("$and", "$or", "$not")
_MAX_DEPTH = 32
_MAX_FIELD = 512
#: Most values one filter may bind (SQLite allows 32,766 per statement). A condition binds one
#: to three, a ``$in`` list at most nine however long it is: about 10,000 conditions.
MAX_PARAMETERS = 30_000

Compiled = tuple[str, list[Any]]


def compile_filter(flt: Mapping[str, Any] | None) -> Compiled:
    """Compile a filter dict to ``(sql_condition, params)`` over the ``metadata`` column.

    Args:
        flt: the filter, or ``None``/``{}`` for "everything".

    Returns:
        A SQL boolean expression and its bound parameters.

    Raises:
        FilterError: unknown operator, bad value type, malformed structure.
    """
    if flt is None:
        return "1", []
    count_conditions(flt)
    sql, params = _node(flt, 0)
    if len(params) > MAX_PARAMETERS:
        raise FilterError(
            f"filter too large: it binds {len(params)} values (at most {MAX_PARAMETERS}, about "
            "10,000 conditions); use {'field': {'$in': [...]}} for long lists of values"
        )
    return sql, params


def count_conditions(flt: Any) -> int:
    """The conditions of a filter (one per operator on a field; ``$in`` of any length is one).

    Counted without recursion and before anything else is checked, so a huge filter is refused
    at once whatever else is wrong with it.

    Raises:
        FilterError: more than :data:`colmax.limits.MAX_FILTER_CONDITIONS`.

    Examples:
        >>> count_conditions({"$or": [{"a": 1}, {"b": {"$gt": 1, "$lt": 5}}]})
        3
    """
    limit = limits.MAX_FILTER_CONDITIONS
    total, stack = 0, [flt]
    while stack:
        node = stack.pop()
        if isinstance(node, (list, tuple)):
            stack.extend(node)
            continue
        if not isinstance(node, Mapping):
            continue
        for field, cond in node.items():
            if field in _COMBINATORS:
                stack.append(cond)
            else:
                total += len(cond) if isinstance(cond, Mapping) and cond else 1
        if total > limit:
            raise FilterError(
                f"filter too large: more than {limit} conditions (colmax.limits."
                "MAX_FILTER_CONDITIONS); use {'field': {'$in': [...]}} for a list of values, "
                "which counts as one"
            )
    return total


def _node(flt: Any, depth: int) -> Compiled:
    if not isinstance(flt, Mapping):
        raise FilterError(f"a filter must be a dict, got {type(flt).__name__}: {flt!r}")
    if depth > _MAX_DEPTH:
        raise FilterError(f"filter nested deeper than {_MAX_DEPTH} levels")
    if not flt:
        return "1", []
    parts: list[Compiled] = []
    for field, cond in flt.items():
        if field in _COMBINATORS:
            parts.append(_combinator(field, cond, depth))
        elif isinstance(field, str) and field.startswith("$"):
            raise FilterError(
                f"unknown filter combinator {field!r}: use $and, $or or $not at the top level "
                f"and {sorted(OPERATORS)} inside a field"
            )
        else:
            parts.append(_field(field, cond))
    return _join(parts, "AND")


def _combinator(op: str, cond: Any, depth: int) -> Compiled:
    if op == "$not":
        sql, params = _node(cond, depth + 1)
        return f"NOT ({sql})", params
    if not isinstance(cond, (list, tuple)) or not cond:
        raise FilterError(f"{op} takes a non-empty list of filters, got {cond!r}")
    return _join([_node(c, depth + 1) for c in cond], "AND" if op == "$and" else "OR")


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


def _path(field: Any) -> str:
    if not isinstance(field, str) or not field or len(field) > _MAX_FIELD:
        raise FilterError(
            f"filter field names must be non-empty strings up to {_MAX_FIELD} chars, got {field!r}"
        )
    if '"' in field or "\\" in field or any(ord(c) < 32 for c in field):
        raise FilterError(
            f"filter field name {field!r} contains a quote, backslash or control character"
        )
    _check_text(field, "filter field name")
    return f'$."{field}"'


def _field(field: Any, cond: Any) -> Compiled:
    path = _path(field)
    if not isinstance(cond, Mapping):
        return _eq(path, cond)
    if not cond:
        raise FilterError(f"empty operator dict for field {field!r}")
    parts = []
    for op, value in cond.items():
        if op not in OPERATORS:
            raise FilterError(
                f"unknown filter operator {op!r} on field {field!r}; known: {sorted(OPERATORS)}"
            )
        parts.append(_operator(path, op, value))
    return _join(parts, "AND")


def _operator(path: str, op: str, value: Any) -> Compiled:
    if op == "$eq":
        return _eq(path, value)
    if op == "$ne":
        sql, params = _eq(path, value)
        return f"NOT ({sql})", params
    if op in ("$in", "$nin"):
        if not isinstance(value, (list, tuple, set, frozenset)):
            raise FilterError(f"{op} takes a list of values, got {value!r}")
        if not value:
            return ("0" if op == "$in" else "1"), []
        sql, params = _in(path, list(value))
        return (sql, params) if op == "$in" else (f"NOT ({sql})", params)
    if op == "$contains":
        kind = _json_kind(value)
        return (
            "EXISTS (SELECT 1 FROM json_each(metadata, ?) AS e WHERE e.type IN "
            f"({kind}) AND e.value = ?)",
            [path, _sql_value(value)],
        )
    if op == "$exists":
        if not isinstance(value, bool):
            raise FilterError(f"$exists takes true or false, got {value!r}")
        return (
            "json_type(metadata, ?) IS NOT NULL" if value else "json_type(metadata, ?) IS NULL"
        ), [path]
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise FilterError(f"{op} compares numbers or strings, got {value!r}")
    _json_kind(value)  # finite numbers, valid strings
    kinds = "'text'" if isinstance(value, str) else "'integer','real'"
    return (
        f"COALESCE(json_type(metadata, ?), '') IN ({kinds}) AND json_extract(metadata, ?) {_RANGE[op]} ?",
        [path, path, value],
    )


def _in(path: str, values: list[Any]) -> Compiled:
    """Membership in a list of any length: one condition per JSON type present, with the
    numbers and the strings each bound as one JSON array parameter."""
    for v in values:
        if v is not None:
            _json_kind(v)  # validates
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
    kind = _json_kind(value)
    return (
        f"COALESCE(json_type(metadata, ?), '') IN ({kind}) AND json_extract(metadata, ?) = ?",
        [path, path, _sql_value(value)],
    )


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "'true'" if value else "'false'"
    if isinstance(value, (int, float)):
        _check_finite(value)
        return "'integer','real'"
    if isinstance(value, str):
        _check_text(value, "filter value")
        return "'text'"
    raise FilterError(
        f"filter values must be str, int, float, bool or None, got {type(value).__name__}: {value!r}"
    )


def _check_text(text: str, what: str) -> None:
    if "\x00" in text:
        raise FilterError(f"{what} {text!r:.80} contains NUL, which SQLite's JSON cannot match")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise FilterError(f"{what} {text!r:.80} is not valid Unicode (lone surrogate)") from None


def _sql_value(value: Any) -> Any:
    return int(value) if isinstance(value, bool) else value


def _check_finite(value: Any) -> None:
    if isinstance(value, float) and not math.isfinite(value):
        raise FilterError(f"filter values must be finite numbers, got {value!r}")
    if isinstance(value, int) and not -(2**63) <= value < 2**63:
        raise FilterError(f"filter integers must fit in 64 bits, got {value!r}")
