"""colmax filters on Qdrant: typed filter fields in the payload, the filter tree compiled to
Qdrant conditions, and the one conversion of those conditions to Qdrant's filter classes.

Qdrant's own matching differs from colmax's filter language (:mod:`colmax.filters`) in
ways that would silently change results if filters were passed through as they are: a condition
on an array field matches when *any* element matches (so ``{"tags": "x"}`` would match
``["x", "y"]``, which colmax's ``$eq`` does not), integers and floats are different match types
(``2`` does not match ``2.0``), the Python bindings of qdrant-edge turn ``True`` into ``1``, a
dotted key means a nested path, and ``is_empty`` counts ``null`` and ``[]`` as missing.

So each point carries, beside its verbatim ``metadata``, a small typed projection of it under
:data:`FIELDS_KEY`, built by :func:`filter_fields`, on which Qdrant's semantics coincide with
colmax's::

    keys   [name, ...]      every top-level key           -> $exists
    nulls  [name, ...]      keys whose value is null      -> $eq None
    s/n/b  {name: value}    scalar str / number / bool    -> $eq $ne $in $nin $gt ... (numbers)
    cs/cn/cb {name: [...]}  what ``$contains`` looks into (SQLite ``json_each``: the elements
                            of an array, the values of an object, a scalar itself), by type

Numbers are stored as floats and compared with ranges (``$eq 2`` is ``2 <= x <= 2``), booleans
as the keywords ``"true"``/``"false"``. ``name`` is ``k_<key>`` for plain keys and
``h_<sha256>`` for keys with other characters, so no user key is ever parsed as a Qdrant path.

:func:`translate` compiles a filter's syntax tree (:func:`colmax.filters.parse_filter`) to
:class:`Match` / :class:`Range` / :class:`Clause`, folding constant parts (``$in []`` matches
nothing); :func:`to_qdrant` turns that neutral tree into the filter classes of qdrant-edge or
qdrant-client (both drivers use it). What Qdrant cannot express exactly raises :class:`~colmax.errors.FilterError`:
``$gt``-style comparisons of strings, and numbers of magnitude ``2**53`` or more (Qdrant compares
numbers as 64-bit floats).

Examples:
    >>> filter_fields({"year": 2024, "tags": ["a"]})["n"]
    {'k_year': 2024.0}
    >>> translate({"year": {"$gte": 2021}})
    Range(key='colmax_f.n.k_year', gt=None, gte=2021.0, lt=None, lte=None)
    >>> translate({"year": {"$in": []}})
    False
"""

from __future__ import annotations

import hashlib
import math
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias

from colmax.errors import FilterError
from colmax.filters import AllOf, AnyOf, Condition, FilterLike, Node, Not, parse_filter

__all__ = [
    "FIELDS_KEY",
    "Clause",
    "Cond",
    "Match",
    "Range",
    "field_name",
    "filter_fields",
    "to_qdrant",
    "translate",
]

#: Payload key of the typed filter fields.
FIELDS_KEY = "colmax_f"
_PLAIN = re.compile(r"[A-Za-z0-9_]{1,64}")
_RANGE_OPS = {"$gt": "gt", "$gte": "gte", "$lt": "lt", "$lte": "lte"}
# Beyond 2**53 not every integer is a float64; Qdrant compares numbers as float64.
_EXACT_LIMIT = 2.0**53


@dataclass(frozen=True)
class Match:
    """The keyword field ``key`` (or one of its array elements) equals one of ``values``."""

    key: str
    values: tuple[str, ...]


@dataclass(frozen=True)
class Range:
    """The float field ``key`` (or one of its array elements) lies in the range."""

    key: str
    gt: float | None = None
    gte: float | None = None
    lt: float | None = None
    lte: float | None = None


@dataclass(frozen=True)
class Clause:
    """All of ``must``, at least one of ``should`` (when any), none of ``must_not``."""

    must: tuple[Cond, ...] = ()
    should: tuple[Cond, ...] = ()
    must_not: tuple[Cond, ...] = ()


Cond: TypeAlias = "Match | Range | Clause"
Folded: TypeAlias = "Cond | bool"  # True: matches every point, False: none


def field_name(key: str) -> str:
    """The filter-field name of a metadata key: readable when plain, a hash otherwise.

    Examples:
        >>> field_name("year"), field_name("a.b")[:6]
        ('k_year', 'h_2e73')
    """
    if _PLAIN.fullmatch(key):
        return f"k_{key}"
    return "h_" + hashlib.sha256(key.encode("utf-8")).hexdigest()[:32]


def filter_fields(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """The typed projection of ``metadata`` that :func:`translate`'s conditions look at."""
    out: dict[str, Any] = {"keys": [], "nulls": []}
    out.update({kind: {} for kind in ("s", "n", "b", "cs", "cn", "cb")})
    for key, value in metadata.items():
        name = field_name(key)
        out["keys"].append(name)
        if value is None:
            out["nulls"].append(name)
        elif (kind := _scalar_kind(value)) is not None:
            out[kind][name] = _stored(value)
        # $contains walks one level like SQLite's json_each: array elements, object values,
        # or the scalar itself.
        if isinstance(value, (list, tuple)):
            members: list[Any] = list(value)
        elif isinstance(value, Mapping):
            members = list(value.values())
        else:
            members = [value]
        for member in members:
            member_kind = _scalar_kind(member)
            if member_kind is not None:
                out["c" + member_kind].setdefault(name, []).append(_stored(member))
    return out


def translate(flt: FilterLike) -> Folded:
    """Compile a colmax filter (a dict, or its parsed tree) to a condition tree over
    :func:`filter_fields`.

    Returns:
        A :data:`Cond`, or ``True`` (no restriction) / ``False`` (nothing can match).

    Raises:
        FilterError: the filter is malformed, or uses what Qdrant cannot evaluate exactly.
    """
    return _node(parse_filter(flt))


def _node(node: Node) -> Folded:
    if isinstance(node, AllOf):
        return _all([_node(p) for p in node.parts])
    if isinstance(node, AnyOf):
        return _any([_node(p) for p in node.parts])
    if isinstance(node, Not):
        return _negate(_node(node.part))
    return _operator(node)


def _operator(cond: Condition) -> Folded:
    field, op, value = cond.field, cond.op, cond.value
    name = field_name(field)
    if op == "$eq":
        return _eq(field, value)
    if op == "$ne":
        return _negate(_eq(field, value))
    if op in ("$in", "$nin"):
        found = _any([_eq(field, v) for v in value])
        return found if op == "$in" else _negate(found)
    if op == "$exists":
        present = Match(f"{FIELDS_KEY}.keys", (name,))
        return present if value else _negate(present)
    if op == "$contains":
        return _typed(f"{FIELDS_KEY}.c", name, value)
    if isinstance(value, str):
        raise FilterError(
            f"{op} on the string {value!r} (field {field!r}): Qdrant cannot order strings; "
            "store a number (e.g. a timestamp) to compare, or use the flat index"
        )
    bound = _number(value, field)
    return Range(f"{FIELDS_KEY}.n.{name}", **{_RANGE_OPS[op]: bound})


def _eq(field: str, value: Any) -> Folded:
    name = field_name(field)
    if value is None:
        return Match(f"{FIELDS_KEY}.nulls", (name,))
    return _typed(f"{FIELDS_KEY}.", name, value)


def _typed(prefix: str, name: str, value: Any) -> Cond:
    """Equality of a scalar on the ``s``/``n``/``b`` fields (``prefix`` ends before the kind)."""
    kind = _scalar_kind(value)
    if kind == "n":
        x = _number(value, name)
        return Range(f"{prefix}n.{name}", gte=x, lte=x)
    if kind is None:  # parse_filter already refused other types
        raise FilterError(f"filter values must be str, int, float, bool or None, got {value!r}")
    return Match(f"{prefix}{kind}.{name}", (_stored(value),))


def _scalar_kind(value: Any) -> str | None:
    if isinstance(value, bool):
        return "b"
    if isinstance(value, (int, float)):
        return "n"
    if isinstance(value, str):
        return "s"
    return None


def _stored(value: Any) -> Any:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        try:
            return float(value)
        except OverflowError:  # a JSON integer beyond float range: clamp, keep the sign
            return math.copysign(sys.float_info.max, value)
    return value


def _number(value: Any, field: str) -> float:
    x = float(value)
    if abs(x) >= _EXACT_LIMIT:
        raise FilterError(
            f"filter number {value!r} on {field!r} is too large: Qdrant compares numbers as "
            "64-bit floats, exact only below 2**53 in magnitude"
        )
    return x


def _all(parts: list[Folded]) -> Folded:
    if any(p is False for p in parts):
        return False
    conds = [p for p in parts if not isinstance(p, bool)]
    if not conds:
        return True
    return conds[0] if len(conds) == 1 else Clause(must=tuple(conds))


def _any(parts: list[Folded]) -> Folded:
    if any(p is True for p in parts):
        return True
    conds = [p for p in parts if not isinstance(p, bool)]
    if not conds:
        return False
    if len(conds) == 1:
        return conds[0]
    # Alternatives on one keyword field ($in over strings) become one MatchAny.
    by_key: dict[str, list[str]] = {}
    for c in conds:
        if isinstance(c, Match):
            by_key.setdefault(c.key, []).extend(c.values)
    merged: list[Cond] = [Match(key, tuple(dict.fromkeys(v))) for key, v in by_key.items()]
    merged += [c for c in conds if not isinstance(c, Match)]
    return merged[0] if len(merged) == 1 else Clause(should=tuple(merged))


def _negate(part: Folded) -> Folded:
    if isinstance(part, bool):
        return not part
    return Clause(must_not=(part,))


def to_qdrant(cond: Cond | None, models: Any) -> Any:
    """The Qdrant ``Filter`` for ``cond`` (``None``: no filter), built from ``models``.

    Args:
        cond: a condition tree from :func:`translate` (not ``True``/``False``).
        models: the filter classes of one Qdrant library: ``qdrant_edge`` or
            ``qdrant_client.models``. Both name them alike (``Filter``, ``FieldCondition``,
            ``MatchValue``, ``MatchAny``) and take the same keywords; the float range is
            ``RangeFloat`` in qdrant-edge and ``Range`` in qdrant-client.
    """
    if cond is None:
        return None
    if isinstance(cond, Clause):
        return _clause(cond, models)
    return models.Filter(must=[_condition(cond, models)])


def _clause(clause: Clause, models: Any) -> Any:
    def conv(items: tuple[Cond, ...]) -> list[Any] | None:
        return [_condition(c, models) for c in items] or None

    return models.Filter(
        must=conv(clause.must), should=conv(clause.should), must_not=conv(clause.must_not)
    )


def _condition(cond: Cond, models: Any) -> Any:
    if isinstance(cond, Clause):
        return _clause(cond, models)
    if isinstance(cond, Match):
        values = list(cond.values)
        match = (
            models.MatchValue(value=values[0]) if len(values) == 1 else models.MatchAny(any=values)
        )
        return models.FieldCondition(key=cond.key, match=match)
    range_class = getattr(models, "RangeFloat", None) or models.Range
    bounds = range_class(gt=cond.gt, gte=cond.gte, lt=cond.lt, lte=cond.lte)
    return models.FieldCondition(key=cond.key, range=bounds)
