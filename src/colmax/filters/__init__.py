"""The metadata filter language: one syntax tree, compiled for each backend.

A filter is a dict::

    {"year": 2024}                                  # equality
    {"year": {"$gte": 2021, "$lt": 2025}}          # several operators on one field are ANDed
    {"lang": {"$in": ["en", "de"]}, "draft": False}  # several fields are ANDed
    {"$or": [{"year": 2020}, {"tags": {"$contains": "news"}}]}

Operators: ``$eq $ne $in $nin $gt $gte $lt $lte`` on scalars (str, int, float, bool, None),
``$contains`` (a JSON array field holds the value), ``$exists`` (bool), and the combinators
``$and`` / ``$or`` (lists of filters) and ``$not`` (one filter).

Missing fields make a condition false (never unknown), so ``$not`` and ``$ne`` are exact
complements. Comparisons are typed: ``{"year": 2020}`` does not match the string ``"2020"``,
and ``True`` does not match ``1``. A document without the field never matches
``$eq``/``$in``/ranges and always matches ``$ne``/``$nin`` (they are the negations).
``$contains`` looks one level into the field as SQLite's ``json_each`` does: an array's
elements, an object's member values, or a scalar field itself (the Qdrant backend mirrors
this).

Limits: field names of 1 to 512 characters without ``"``, ``\\`` or control characters (SQLite
JSON paths cannot address them portably); strings without NUL (SQLite's JSON functions stop at
it); at most :data:`colmax.limits.MAX_FILTER_CONDITIONS` conditions (one per operator on a
field; a ``$in`` list of any length is one), so that one filter cannot occupy SQLite for long
(each condition is tested on every document; a query is also stopped after
:data:`colmax.limits.FILTER_TIMEOUT_S`); nesting up to 32 levels.

How it is organised: :func:`parse_filter` validates a dict once and returns its syntax tree
(:mod:`colmax.filters.tree`); :func:`to_sql` compiles a tree for SQLite (the flat and plaid
indexes, :mod:`colmax.filters.sql`); the Qdrant backend compiles the same tree to Qdrant
conditions (:mod:`colmax.backends.qdrant.filters`). The LangChain and LlamaIndex doors
translate their framework's filter objects into the dict language.

Examples:
    >>> parse_filter({"year": {"$gte": 2021}})
    Condition(field='year', op='$gte', value=2021)
    >>> to_sql({"year": {"$gte": 2021}})[1]
    ['$."year"', '$."year"', 2021]
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from colmax.filters.sql import Compiled, to_sql
from colmax.filters.tree import (
    MATCH_ALL,
    MAX_PARAMETERS,
    OPERATORS,
    AllOf,
    AnyOf,
    Condition,
    Node,
    Not,
    count_conditions,
    parse,
)

__all__ = [
    "MATCH_ALL",
    "MAX_PARAMETERS",
    "OPERATORS",
    "AllOf",
    "AnyOf",
    "Compiled",
    "Condition",
    "FilterLike",
    "Node",
    "Not",
    "compile_filter",
    "count_conditions",
    "parse_filter",
    "to_sql",
]

#: What every ``filter=`` argument accepts: a filter dict, a parsed tree, or ``None``.
FilterLike = Mapping[str, Any] | Node | None


def parse_filter(flt: FilterLike) -> Node:
    """Validate a filter once and return its syntax tree.

    A hand-built tree (:class:`Condition`, :class:`AllOf`, ...) gets the checks a dict gets; a
    tree from an earlier call passes through unchanged, without a second walk.

    Args:
        flt: a filter dict, a tree (from an earlier call, or built by hand), or ``None``/``{}``
            for "everything" (:data:`MATCH_ALL`).

    Raises:
        FilterError: unknown operator, bad value type, malformed structure, too large.
    """
    return parse(flt)


def compile_filter(flt: FilterLike) -> Compiled:
    """``(sql_condition, params)`` over the ``metadata`` column (same as :func:`to_sql`).

    Raises:
        FilterError: the filter is malformed.
    """
    return to_sql(flt)
