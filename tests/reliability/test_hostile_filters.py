"""Metadata filters with hostile field names, values and shapes, checked against a reference.

A plain-Python evaluator of the documented filter language (``colmax.filters``) decides
which documents match, or that the filter is malformed. ``search(filter=...)`` must return
exactly those documents or raise ``FilterError``; nothing else may escape (no SQLite error, no
injection: field names and values are bound parameters), and the index is never changed.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest
from hypothesis import event, example, given
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context
from rel_helpers import DIM, REL_SETTINGS, engine_fingerprint, raw_vectors, rel_settings, scaled

from colmax import Engine, limits
from colmax.errors import ColmaxError, FilterError

OPERATORS = {"$eq", "$ne", "$in", "$nin", "$gt", "$gte", "$lt", "$lte", "$contains", "$exists"}
INVALID = object()


class Malformed(Exception):
    """The reference says: this filter must raise FilterError."""


# ---------------------------------------------------------------------------- the reference
def reference(meta: dict[str, Any], flt: Any, depth: int = 0) -> bool:
    """Does ``meta`` match ``flt``? Raises :class:`Malformed` for an invalid filter."""
    if not isinstance(flt, dict) or depth > 32:
        raise Malformed
    results = []
    for key, cond in flt.items():
        if key in ("$and", "$or"):
            if not isinstance(cond, (list, tuple)) or not cond:
                raise Malformed
            parts = [reference(meta, c, depth + 1) for c in cond]
            results.append(all(parts) if key == "$and" else any(parts))
        elif key == "$not":
            results.append(not reference(meta, cond, depth + 1))
        else:
            results.append(_field(meta, key, cond))
    return all(results)


def _field(meta: dict[str, Any], field: Any, cond: Any) -> bool:
    if (
        not isinstance(field, str)
        or not field
        or len(field) > 512
        or field.startswith("$")
        or '"' in field
        or "\\" in field
        or any(ord(c) < 32 for c in field)
        or not _encodable(field)
    ):
        raise Malformed
    present, value = field in meta, meta.get(field)
    if not isinstance(cond, dict):
        return _eq(present, value, cond)
    if not cond:
        raise Malformed
    return all([_op(present, value, op, arg) for op, arg in cond.items()])  # validate every op


def _op(present: bool, value: Any, op: str, arg: Any) -> bool:
    if op not in OPERATORS:
        raise Malformed
    if op == "$eq":
        return _eq(present, value, arg)
    if op == "$ne":
        return not _eq(present, value, arg)
    if op in ("$in", "$nin"):
        if not isinstance(arg, (list, tuple, set, frozenset)):
            raise Malformed
        hits = [_eq(present, value, a) for a in arg]  # evaluate all: each must be valid
        return any(hits) if op == "$in" else not any(hits)
    if op == "$exists":
        if not isinstance(arg, bool):
            raise Malformed
        return present == arg
    if op == "$contains":
        if arg is None:
            raise Malformed
        _check_scalar(arg)
        # One level, like SQLite's json_each: array elements, object values, or the scalar.
        inside = (
            value
            if isinstance(value, list)
            else list(value.values())
            if isinstance(value, dict)
            else [value]
        )
        return present and any(_same(v, arg) for v in inside)
    # ranges
    if isinstance(arg, bool) or not isinstance(arg, (int, float, str)):
        raise Malformed
    _check_scalar(arg)
    if not present or isinstance(value, bool):
        return False
    if isinstance(arg, str) != isinstance(value, str) or not isinstance(value, (int, float, str)):
        return False
    return {"$gt": value > arg, "$gte": value >= arg, "$lt": value < arg, "$lte": value <= arg}[op]


def _eq(present: bool, value: Any, arg: Any) -> bool:
    if arg is None:
        return present and value is None
    _check_scalar(arg)
    return present and _same(value, arg)


def _check_scalar(arg: Any) -> None:
    if not isinstance(arg, (bool, int, float, str)):
        raise Malformed
    if isinstance(arg, float) and not math.isfinite(arg):
        raise Malformed
    if isinstance(arg, int) and not isinstance(arg, bool) and not -(2**63) <= arg < 2**63:
        raise Malformed
    if isinstance(arg, str) and ("\x00" in arg or not _encodable(arg)):
        raise Malformed


def _same(value: Any, arg: Any) -> bool:
    """Typed equality: bools only equal bools, numbers numbers (1 == 1.0), strings strings."""
    if isinstance(arg, bool) or isinstance(value, bool):
        return isinstance(arg, bool) and isinstance(value, bool) and arg == value
    if isinstance(arg, str) or isinstance(value, str):
        return isinstance(arg, str) and isinstance(value, str) and arg == value
    if isinstance(arg, (int, float)) and isinstance(value, (int, float)):
        return value == arg
    return False


def _encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


# ---------------------------------------------------------------------------- strategies
INJECTIONS = [
    "x' OR '1'='1",
    'x" OR 1=1 --',
    "'); DROP TABLE documents; --",
    "$.a",
    "a.b",
    "a[0]",
    "a\\",
    'a\\"b',
    "*",
    "%",
    "1=1",
    "key; ATTACH DATABASE '/tmp/x' AS x",
]
field_names = st.one_of(
    st.sampled_from(["a", "b", "a.b", "a[0]", "ü", "日本", " ", "a b", "a\\b", "$a", ""]),
    st.sampled_from(INJECTIONS),
    st.text(max_size=4),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**63), 2**63 - 1),
    st.sampled_from([0, 1, -1, 1.0, 0.5, -0.0, 2**53 + 1, 1e308]),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["", "a", "A", "a\x00b", "日本", "'", '"', "\\", *INJECTIONS]),
    st.text(max_size=3),
)
meta_values = st.one_of(
    scalars,
    st.lists(scalars, max_size=3),
    st.dictionaries(st.text(max_size=2), scalars, max_size=2),
)
metadatas = st.lists(
    st.dictionaries(field_names, meta_values, max_size=3).filter(
        lambda m: _encodable(repr(m)) and "\\x00" not in repr(m)  # what add() accepts
    ),
    min_size=1,
    max_size=5,
)
bad_values = st.sampled_from([float("nan"), float("inf"), 2**64, b"x", object(), {1}, "\ud800"])
filter_values = st.one_of(scalars, bad_values)
operator_conditions = st.dictionaries(
    st.one_of(st.sampled_from(sorted(OPERATORS)), st.sampled_from(["$regex", "$where", "eq", "$"])),
    st.one_of(filter_values, st.lists(filter_values, max_size=3), st.booleans()),
    max_size=2,
)
leaf_filters = st.dictionaries(
    field_names, st.one_of(filter_values, operator_conditions), min_size=1, max_size=2
)
filters = st.recursive(
    leaf_filters,
    lambda inner: st.one_of(
        st.builds(lambda c: {"$and": c}, st.lists(inner, max_size=3)),
        st.builds(lambda c: {"$or": c}, st.lists(inner, max_size=3)),
        st.builds(lambda c: {"$not": c}, inner),
        st.builds(lambda c: {"$nor": c}, st.lists(inner, max_size=2)),
    ),
    max_leaves=6,
)


# Well-formed filters over a small shared vocabulary: most of them match something.
FIELDS = ["a", "b", "a.b", "ü", "a b", "x' OR '1'='1"]
POOL = [None, True, False, 0, 1, 1.0, -2, 2.5, "", "x", "X", "1", "'", "日本"]
small_values = st.sampled_from(POOL)
small_metadatas = st.lists(
    st.dictionaries(
        st.sampled_from(FIELDS),
        st.one_of(small_values, st.lists(small_values, max_size=3), st.just({"x": 1})),
        max_size=3,
    ),
    min_size=2,
    max_size=6,
)
small_conditions = st.one_of(
    small_values,
    st.dictionaries(
        st.sampled_from(sorted(OPERATORS - {"$in", "$nin", "$exists"})),
        small_values.filter(lambda v: v is not None),
        min_size=1,
        max_size=2,
    ),
    st.builds(
        lambda op, vs: {op: vs},
        st.sampled_from(["$in", "$nin"]),
        st.lists(small_values, max_size=4),
    ),
    st.builds(lambda b: {"$exists": b}, st.booleans()),
)
small_filters = st.recursive(
    st.dictionaries(st.sampled_from(FIELDS), small_conditions, min_size=1, max_size=2),
    lambda inner: st.one_of(
        st.builds(lambda c: {"$and": c}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda c: {"$or": c}, st.lists(inner, min_size=1, max_size=3)),
        st.builds(lambda c: {"$not": c}, inner),
    ),
    max_leaves=5,
)


def _engine(metas: list[dict[str, Any]]) -> Engine:
    engine = Engine(dim=DIM)
    engine.add(
        ids=[f"d{i}" for i in range(len(metas))],
        metadatas=metas,
        embeddings=[raw_vectors(i, 2) for i in range(len(metas))],
    )
    return engine


def _leaves(flt: Any) -> int:
    """Conditions in a filter (a ``$in`` list counts once)."""
    if not isinstance(flt, dict):
        return 0
    n = 0
    for key, cond in flt.items():
        if key in ("$and", "$or") and isinstance(cond, list):
            n += sum(_leaves(c) for c in cond)
        elif key == "$not":
            n += _leaves(cond)
        else:
            n += len(cond) if isinstance(cond, dict) else 1
    return n


def _check(engine: Engine, metas: list[dict[str, Any]], flt: Any) -> None:
    stored = [d.metadata for d in engine.get(engine.ids())]
    shown = repr(flt)[:300]
    try:
        expected = {f"d{i}" for i, m in enumerate(stored) if reference(m, flt)}
    except Malformed:
        expected = None
    if currently_in_test_context():
        event("malformed" if expected is None else f"valid, matches {min(len(expected), 2)}+ docs")
    before = engine_fingerprint(engine)
    try:
        hits = engine.search(query_embeddings=raw_vectors(99, 2), k=len(metas), filter=flt)
    except FilterError as exc:
        # The documented limit: colmax.limits.MAX_FILTER_CONDITIONS conditions.
        too_large = "too large" in str(exc) and _leaves(flt) > limits.MAX_FILTER_CONDITIONS
        assert expected is None or too_large, f"valid filter refused: {shown} ({exc})"
    except ColmaxError as exc:  # pragma: no cover - reported as a failure
        raise AssertionError(f"{shown} raised {type(exc).__name__}, not FilterError") from exc
    else:
        assert expected is not None, f"malformed filter accepted: {shown}"
        assert _leaves(flt) <= limits.MAX_FILTER_CONDITIONS, f"over the limit: {shown}"
        assert {h.id for h in hits} == expected, (shown, stored)
    assert engine_fingerprint(engine) == before


@REL_SETTINGS
@given(metas=metadatas, flt=filters)
@example(metas=[{"a": 1}, {"a": "1"}, {"a": True}, {"a": 1.0}], flt={"a": 1})
@example(metas=[{"a": "x"}, {"a": {"k": "x"}}, {"a": ["x"]}], flt={"a": {"$contains": "x"}})
@example(metas=[{"a\\b": 1}, {"a": {"b": 1}}, {"a.b": 2}], flt={"a\\b": 1})
@example(metas=[{"a.b": 2}, {"a": {"b": 2}}], flt={"a.b": 2})
@example(metas=[{"x": "a"}, {"x": "ab"}], flt={"x": "a\x00b"})
@example(metas=[{"x": "' OR '1'='1"}, {"x": 1}], flt={"x' OR '1'='1": 1})
@example(metas=[{"x": 1}], flt={"x": {"$in": list(range(5000))}})
@example(metas=[{"x": 1}], flt={"$or": [{"x": i} for i in range(3000)]})  # over the limit
@example(metas=[{"x": 999}], flt={"$or": [{"x": i} for i in range(1000)]})  # at the limit
@example(metas=[{"x": 1}], flt={"x": "\ud800"})
@example(metas=[{"x": 1}], flt={"\ud800": 1})
def test_filters_match_the_reference(metas: list[dict[str, Any]], flt: Any) -> None:
    _check(_engine(metas), metas, flt)


@rel_settings(max_examples=scaled(80))
@given(metas=small_metadatas, flt=small_filters)
def test_well_formed_filters_match_the_reference(metas: list[dict[str, Any]], flt: Any) -> None:
    _check(_engine(metas), metas, flt)


@pytest.mark.parametrize(
    "flt",
    [
        {"x": {"$in": list(range(100_000))}},
        {"$or": [{"x": i} for i in range(20_000)]},
        {"$and": [{"x": {"$ne": i}} for i in range(20_000)]},
    ],
    ids=["in-100k", "or-20k", "and-20k"],
)
def test_huge_filters_are_answered_or_refused_cleanly(flt: dict[str, Any]) -> None:
    metas = [{"x": 1}, {"x": 7}, {}]
    _check(_engine(metas), metas, flt)


def test_sql_in_field_names_and_values_is_inert() -> None:
    metas = [{"a": 1, "'); DROP TABLE documents; --": "v"}, {"a": 2}]
    engine = _engine(metas)
    for flt in (
        {"'); DROP TABLE documents; --": "v"},
        {"a": "1 OR 1=1"},
        {"a": {"$in": ["1) OR (1=1"]}},
        {"$or": [{"a": "x' OR 'x'='x"}]},
    ):
        _check(engine, metas, flt)
    assert engine.ids() == ["d0", "d1"]
    assert np.isfinite(engine.search(query_embeddings=raw_vectors(1, 1), k=2)[0].score)
