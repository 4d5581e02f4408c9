"""The filter language as a syntax tree: :func:`parse` validates a filter dict once.

Every backend compiles the same tree (:mod:`colmax.filters.sql` for SQLite,
:mod:`colmax.backends.qdrant.filters` for Qdrant), so a filter means the same everywhere and is
checked once, with the same messages, whichever index runs it.

Nodes:

- :class:`Condition`: one ``field <op> value`` test (``$in`` / ``$nin`` values are a tuple);
- :class:`AllOf` / :class:`AnyOf`: conjunction / disjunction (``AllOf(())`` matches every
  document, ``AnyOf(())`` none);
- :class:`Not`: negation.

A dict with several fields, or a field with several operators, is an :class:`AllOf`; one part
alone is that part itself.

Examples:
    >>> parse({"year": {"$gte": 2021}, "lang": {"$in": ["en", "de"]}})
    AllOf(parts=(Condition(field='year', op='$gte', value=2021), Condition(field='lang', op='$in', value=('en', 'de'))))
"""

from __future__ import annotations

import math
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias

from colmax import limits
from colmax.errors import FilterError

__all__ = [
    "MATCH_ALL",
    "MAX_PARAMETERS",
    "OPERATORS",
    "AllOf",
    "AnyOf",
    "Condition",
    "Node",
    "Not",
    "count_conditions",
    "parse",
]

RANGE_OPERATORS = ("$gt", "$gte", "$lt", "$lte")
OPERATORS = frozenset({"$eq", "$ne", "$in", "$nin", "$contains", "$exists", *RANGE_OPERATORS})
_COMBINATORS = ("$and", "$or", "$not")
_MAX_DEPTH = 32
#: Nesting of a tree's ``AllOf`` / ``AnyOf`` / ``Not`` nodes: one dict level can make two (the
#: ``AllOf`` of its keys, then a combinator's node), so every tree :func:`parse` makes fits.
_MAX_TREE_DEPTH = 2 * (_MAX_DEPTH + 1)
_MAX_FIELD = 512
#: Objects and lists a filter may nest per allowed condition: a real filter has about two
#: (a list and an object around each); empty ones ({} is "everything") and a Python filter
#: that holds itself are what the bound stops.
_MAX_NODES_PER_CONDITION = 4
#: Most values one filter may bind (SQLite allows 32,766 per statement). A condition binds one
#: to three, a ``$in`` list at most nine however long it is: about 10,000 conditions.
MAX_PARAMETERS = 30_000


@dataclass(frozen=True)
class Condition:
    """``field <op> value``: ``op`` is one of :data:`OPERATORS`; a tuple for ``$in``/``$nin``."""

    field: str
    op: str
    value: Any


@dataclass(frozen=True)
class AllOf:
    """Every part matches (no parts: every document)."""

    parts: tuple[Node, ...]


@dataclass(frozen=True)
class AnyOf:
    """At least one part matches."""

    parts: tuple[Node, ...]


@dataclass(frozen=True)
class Not:
    """``part`` does not match."""

    part: Node


Node: TypeAlias = Condition | AllOf | AnyOf | Not
#: The tree of ``None`` / ``{}``: no restriction.
MATCH_ALL = AllOf(())


def parse(flt: Mapping[str, Any] | Node | None) -> Node:
    """Validate a filter dict and return its tree; a tree gets the same checks.

    A hand-built tree (:class:`Condition`, :class:`AllOf`, :class:`AnyOf`, :class:`Not`) is
    checked like the dict it stands for: node types, field names, operators, values, nesting
    and size. It is returned as it is when it was already in the form :func:`parse` makes
    (``$in`` / ``$nin`` values as tuples), else as an equal tree in that form. A tree once
    checked is not walked again.

    Args:
        flt: the filter, or ``None``/``{}`` for "everything".

    Raises:
        FilterError: unknown operator, bad value type, malformed structure, too large.
    """
    if flt is None:
        return MATCH_ALL
    if isinstance(flt, (Condition, AllOf, AnyOf, Not)):
        if _CHECKED.get(id(flt)) is flt:
            return flt
        node = _checked_tree(flt, 0, [0, 0])
    else:
        count_conditions(flt)
        node = _node(flt, 0)
    bound = _parameters(node)
    if bound > MAX_PARAMETERS:
        raise FilterError(
            f"filter too large: it binds {bound} values (at most {MAX_PARAMETERS}, about "
            "10,000 conditions); use {'field': {'$in': [...]}} for long lists of values"
        )
    _CHECKED[id(node)] = node
    return node


#: Trees :func:`parse` returned, by ``id``: passing one again costs no second walk. (Weak: an
#: entry goes with its tree, so a later object reusing the id is not taken for it.)
_CHECKED: weakref.WeakValueDictionary[int, Node] = weakref.WeakValueDictionary()


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
    total, stack, visited = 0, [flt], 0
    while stack:
        node = stack.pop()
        visited += 1
        if visited > _MAX_NODES_PER_CONDITION * limit:  # empty parts, shared or cyclic ones
            raise FilterError(
                f"filter too large: more than {_MAX_NODES_PER_CONDITION * limit} nested "
                "objects and lists (a filter that contains itself never ends)"
            )
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
            raise _too_many_conditions(limit)
    return total


def _too_many_conditions(limit: int) -> FilterError:
    return FilterError(
        f"filter too large: more than {limit} conditions (colmax.limits."
        "MAX_FILTER_CONDITIONS); use {'field': {'$in': [...]}} for a list of values, "
        "which counts as one"
    )


def _checked_tree(node: Any, depth: int, conditions: list[int]) -> Node:
    """``node`` (a hand-built tree) checked as its dict form would be; ``node`` itself when it
    is already in :func:`parse`'s form, else an equal tree in that form.

    ``conditions`` counts the conditions met so far (each occurrence, as the compiled SQL
    has one test per occurrence) and the nodes (shared empty parts are bounded too, as in
    :func:`count_conditions`), so a huge tree is refused once it passes a limit.
    """
    conditions[1] += 1
    most = _MAX_NODES_PER_CONDITION * limits.MAX_FILTER_CONDITIONS
    if conditions[1] > most:
        raise FilterError(f"filter too large: more than {most} nodes")
    if isinstance(node, Condition):
        conditions[0] += 1
        if conditions[0] > limits.MAX_FILTER_CONDITIONS:
            raise _too_many_conditions(limits.MAX_FILTER_CONDITIONS)
        field = _check_field(node.field)
        if field.startswith("$"):
            raise FilterError(
                f"filter field name {field!r} starts with '$', which the filter language keeps "
                "for operators and combinators"
            )
        _check_operator(field, node.op)
        checked = _condition(field, node.op, node.value)
        return node if checked.value is node.value else checked
    if not isinstance(node, (AllOf, AnyOf, Not)):
        raise FilterError(
            "a filter tree is made of Condition, AllOf, AnyOf and Not nodes, got "
            f"{type(node).__name__}: {node!r:.80}"
        )
    if depth >= _MAX_TREE_DEPTH:
        raise FilterError(f"filter tree nested deeper than {_MAX_TREE_DEPTH} levels")
    if isinstance(node, Not):
        part = _checked_tree(node.part, depth + 1, conditions)
        return node if part is node.part else Not(part)
    kind = type(node).__name__
    if not isinstance(node.parts, (tuple, list)):
        raise FilterError(
            f"{kind}.parts must be a tuple of filter nodes, got "
            f"{type(node.parts).__name__}: {node.parts!r:.80}"
        )
    parts = tuple(_checked_tree(p, depth + 1, conditions) for p in node.parts)
    if isinstance(node.parts, tuple) and all(a is b for a, b in zip(parts, node.parts)):
        return node
    return type(node)(parts)


def _node(flt: Any, depth: int) -> Node:
    if not isinstance(flt, Mapping):
        raise FilterError(f"a filter must be a dict, got {type(flt).__name__}: {flt!r}")
    if depth > _MAX_DEPTH:
        raise FilterError(f"filter nested deeper than {_MAX_DEPTH} levels")
    parts: list[Node] = []
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
    return _all(parts)


def _all(parts: Sequence[Node]) -> Node:
    return parts[0] if len(parts) == 1 else AllOf(tuple(parts))


def _combinator(op: str, cond: Any, depth: int) -> Node:
    if op == "$not":
        return Not(_node(cond, depth + 1))
    if not isinstance(cond, (list, tuple)) or not cond:
        raise FilterError(f"{op} takes a non-empty list of filters, got {cond!r}")
    parts = [_node(c, depth + 1) for c in cond]
    if len(parts) == 1:
        return parts[0]
    return AllOf(tuple(parts)) if op == "$and" else AnyOf(tuple(parts))


def _check_field(field: Any) -> str:
    if not isinstance(field, str) or not field or len(field) > _MAX_FIELD:
        raise FilterError(
            f"filter field names must be non-empty strings up to {_MAX_FIELD} chars, got {field!r}"
        )
    if '"' in field or "\\" in field or any(ord(c) < 32 for c in field):
        raise FilterError(
            f"filter field name {field!r} contains a quote, backslash or control character"
        )
    check_text(field, "filter field name")
    return field


def _field(field: Any, cond: Any) -> Node:
    field = _check_field(field)
    if not isinstance(cond, Mapping):
        return _condition(field, "$eq", cond)
    if not cond:
        raise FilterError(f"empty operator dict for field {field!r}")
    parts = []
    for op, value in cond.items():
        _check_operator(field, op)
        parts.append(_condition(field, op, value))
    return _all(parts)


def _check_operator(field: str, op: Any) -> None:
    if not isinstance(op, str) or op not in OPERATORS:
        raise FilterError(
            f"unknown filter operator {op!r} on field {field!r}; known: {sorted(OPERATORS)}"
        )


def _condition(field: str, op: str, value: Any) -> Condition:
    if op in ("$eq", "$ne"):
        if value is not None:
            check_scalar(value)
    elif op in ("$in", "$nin"):
        if not isinstance(value, (list, tuple, set, frozenset)):
            raise FilterError(f"{op} takes a list of values, got {value!r}")
        value = tuple(value)
        for v in value:
            if v is not None:
                check_scalar(v)
    elif op == "$contains":
        check_scalar(value)
    elif op == "$exists":
        if not isinstance(value, bool):
            raise FilterError(f"$exists takes true or false, got {value!r}")
    else:  # ranges
        if isinstance(value, bool) or not isinstance(value, (int, float, str)):
            raise FilterError(f"{op} compares numbers or strings, got {value!r}")
        check_scalar(value)
    return Condition(field, op, value)


def check_scalar(value: Any) -> None:
    """A value a condition may compare: a str, a finite number or a bool (not ``None``).

    Raises:
        FilterError: another type, NaN/inf, an integer beyond 64 bits, a string with NUL.
    """
    if isinstance(value, bool):
        return
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            raise FilterError(f"filter values must be finite numbers, got {value!r}")
        if isinstance(value, int) and not -(2**63) <= value < 2**63:
            raise FilterError(f"filter integers must fit in 64 bits, got {value!r}")
        return
    if isinstance(value, str):
        check_text(value, "filter value")
        return
    raise FilterError(
        f"filter values must be str, int, float, bool or None, got {type(value).__name__}: {value!r}"
    )


def check_text(text: str, what: str) -> None:
    """Strings SQLite's JSON functions can match: no NUL, valid Unicode."""
    if "\x00" in text:
        raise FilterError(f"{what} {text!r:.80} contains NUL, which SQLite's JSON cannot match")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise FilterError(f"{what} {text!r:.80} is not valid Unicode (lone surrogate)") from None


def _parameters(node: Node) -> int:
    """Values the SQL form binds (the size measure :data:`MAX_PARAMETERS` limits)."""
    if isinstance(node, Not):
        return _parameters(node.part)
    if isinstance(node, (AllOf, AnyOf)):
        return sum(_parameters(p) for p in node.parts)
    op, value = node.op, node.value
    if op in ("$eq", "$ne"):
        return 1 if value is None else 3
    if op in ("$in", "$nin"):
        singles = sum(
            1 if v is None else 3 for v in (None, True, False) if any(x is v for x in value)
        )
        numbers = any(isinstance(v, (int, float)) and not isinstance(v, bool) for v in value)
        texts = any(isinstance(v, str) for v in value)
        return singles + 3 * (numbers + texts)
    if op == "$contains":
        return 2
    if op == "$exists":
        return 1
    return 3
