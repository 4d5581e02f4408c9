"""Hand-built filter trees (Condition / AllOf / AnyOf / Not) get the checks a filter dict gets.

The tree classes are exported and accepted wherever a filter is; before, ``parse()`` passed a
tree through unchecked, so a bad one failed late with a KeyError / AttributeError, an error
blaming the index, or was accepted silently.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from colmax import Engine, limits
from colmax.errors import FilterError
from colmax.filters import AllOf, AnyOf, Condition, Node, Not, parse_filter

METADATA = {
    "a": {"x": 1, "lang": "en", "tags": ["news"]},
    "b": {"x": 2, "lang": "de"},
    "c": {"x": 3, "lang": "en", "tags": ["tech"]},
    "d": {},
}
QUERY = np.ones((1, 8), dtype=np.float32)


@pytest.fixture
def engine() -> Engine:
    rng = np.random.default_rng(0)
    e = Engine(dim=8)
    e.add(
        embeddings=[rng.standard_normal((3, 8)).astype(np.float32) for _ in METADATA],
        ids=list(METADATA),
        metadatas=list(METADATA.values()),
    )
    return e


def _state(engine: Engine) -> list[tuple[str, str, dict[str, Any]]]:
    docs = engine.get(sorted(METADATA))
    return [(d.id, d.text, d.metadata) for d in docs]


BAD_TREES: list[tuple[str, Any, str]] = [
    ("unknown operator", Condition("x", "$regex", 1), "unknown filter operator '$regex'"),
    ("unhashable operator", Condition("x", ["$eq"], 1), "unknown filter operator"),  # type: ignore[arg-type]
    ("quote in field", Condition('x"y', "$eq", 1), "contains a quote"),
    ("empty field", Condition("", "$eq", 1), "non-empty strings"),
    ("non-str field", Condition(7, "$eq", 1), "non-empty strings"),  # type: ignore[arg-type]
    ("$ field", Condition("$and", "$eq", 1), "starts with '$'"),
    ("junk part", AllOf((Condition("x", "$eq", 1), "junk")), "got str: 'junk'"),  # type: ignore[arg-type]
    ("junk under Not", Not({"x": 1}), "got dict"),  # type: ignore[arg-type]
    ("parts not a tuple", AnyOf("ab"), "AnyOf.parts must be a tuple"),  # type: ignore[arg-type]
    ("nested list in $in", Condition("x", "$in", [1, [2]]), "got list: [2]"),
    ("$in not a list", Condition("x", "$in", 1), "$in takes a list"),
    ("nan", Condition("x", "$eq", float("nan")), "finite numbers"),
    ("None in a range", Condition("x", "$gte", None), "$gte compares numbers or strings"),
    ("$exists not a bool", Condition("x", "$exists", 1), "$exists takes true or false"),
    ("NUL in a value", Condition("lang", "$eq", "e\x00n"), "contains NUL"),
    (
        "too many conditions",
        AnyOf(tuple(Condition("x", "$eq", i) for i in range(limits.MAX_FILTER_CONDITIONS + 1))),
        "filter too large",
    ),
]


def _too_deep() -> Node:
    node: Node = Condition("x", "$eq", 1)
    for _ in range(500):
        node = Not(node)
    return node


BAD_TREES.append(("too deep", _too_deep(), "nested deeper than"))


def _cycle() -> Node:
    parts: list[Node] = []
    node = AllOf(parts)  # type: ignore[arg-type]
    parts.append(node)
    return node


BAD_TREES.append(("a cycle", _cycle(), "nested deeper than"))


@pytest.mark.parametrize(
    ("tree", "fragment"), [(t, f) for _, t, f in BAD_TREES], ids=[n for n, _, _ in BAD_TREES]
)
def test_a_bad_tree_is_refused_like_a_bad_dict(engine: Engine, tree: Any, fragment: str) -> None:
    before = _state(engine)
    with pytest.raises(FilterError) as search_error:
        engine.search(query_embeddings=QUERY, filter=tree)
    assert fragment in str(search_error.value)
    with pytest.raises(FilterError) as delete_error:
        engine.delete(filter=tree)
    assert fragment in str(delete_error.value)
    assert len(engine) == len(METADATA) and _state(engine) == before  # nothing changed


GOOD: list[tuple[Node, dict[str, Any]]] = [
    (Condition("x", "$eq", 1), {"x": 1}),
    (Condition("x", "$in", [1, 3]), {"x": {"$in": [1, 3]}}),  # a list, as a user writes it
    (Condition("x", "$nin", {2}), {"x": {"$nin": [2]}}),
    (Condition("tags", "$contains", "tech"), {"tags": {"$contains": "tech"}}),
    (
        AllOf((Condition("x", "$gte", 2), Condition("lang", "$eq", "en"))),
        {"x": {"$gte": 2}, "lang": "en"},
    ),
    (
        AnyOf((Condition("x", "$lt", 2), Not(Condition("lang", "$exists", True)))),
        {"$or": [{"x": {"$lt": 2}}, {"$not": {"lang": {"$exists": True}}}]},
    ),
    (AllOf([Condition("x", "$ne", 2)]), {"$and": [{"x": {"$ne": 2}}]}),  # type: ignore[arg-type]
    (AllOf(()), {}),
]


@pytest.mark.parametrize(("tree", "flt"), GOOD, ids=[repr(f) for _, f in GOOD])
def test_a_good_tree_gives_the_results_of_its_dict(
    engine: Engine, tree: Node, flt: dict[str, Any]
) -> None:
    def ids(f: Any) -> list[str]:
        return [h.id for h in engine.search(query_embeddings=QUERY, k=10, filter=f)]

    assert ids(tree) == ids(flt)
    assert len(ids(tree)) < len(METADATA) or flt == {}  # the filter does restrict


def test_a_tree_in_parse_form_passes_through_and_a_list_value_becomes_a_tuple() -> None:
    tree = AllOf((Condition("x", "$in", (1, 2)), Not(Condition("y", "$eq", "a"))))
    assert parse_filter(tree) is tree
    listed = Condition("x", "$in", [1, 2])
    assert parse_filter(listed) == Condition("x", "$in", (1, 2))
    parsed = parse_filter({"$or": [{"x": {"$in": [1, 2]}}, {"$not": {"y": "a", "z": 1}}]})
    assert parse_filter(parsed) is parsed


def test_every_tree_a_dict_parses_to_is_accepted_again() -> None:
    """The deepest dict allowed makes a tree twice as deep: the tree limit lets it through."""
    flt: dict[str, Any] = {"a": {"$gt": 1, "$lt": 5}, "b": 2}
    for _ in range(32):  # each level: AllOf(c, AnyOf(inner, z)), two tree levels
        flt = {"$or": [flt, {"z": 1}], "c": 1}
    tree = parse_filter(flt)
    rebuilt = _copy(tree)  # an equal tree that parse() has not seen
    assert rebuilt is not tree and parse_filter(rebuilt) == tree
    with pytest.raises(FilterError, match="nested deeper"):
        parse_filter({"$not": flt})
    with pytest.raises(FilterError, match="nested deeper"):
        parse_filter(Not(_copy(tree)))  # one level more than any dict makes


def _copy(node: Node) -> Node:
    if isinstance(node, Condition):
        return Condition(node.field, node.op, node.value)
    if isinstance(node, Not):
        return Not(_copy(node.part))
    return type(node)(tuple(_copy(p) for p in node.parts))


def _shared_dict(levels: int) -> dict[str, Any]:
    """2**levels empty filters from ``levels`` objects: each level holds the one below twice."""
    part: dict[str, Any] = {}
    for _ in range(levels):
        part = {"$and": [part, part]}
    return part


def _shared_tree(levels: int) -> Node:
    part: Node = AllOf(())
    for _ in range(levels):
        part = AllOf((part, part))
    return part


def _self_holding_dict() -> dict[str, Any]:
    flt: dict[str, Any] = {}
    flt["$not"] = flt
    return flt


@pytest.mark.parametrize(
    "flt",
    [_self_holding_dict(), _shared_dict(40), _shared_tree(40)],
    ids=["dict-holding-itself", "dict-2**40-shared-parts", "tree-2**40-shared-parts"],
)
def test_filters_that_never_end_are_refused_at_once(engine: Engine, flt: Any) -> None:
    """A Python filter can hold itself or share one empty part 2**40 times (JSON cannot): the
    walk over it never ended. Both forms now stop at a bound on the objects walked."""
    before = _state(engine)
    with pytest.raises(FilterError, match="filter too large"):
        engine.search(query_embeddings=np.ones((1, 8), dtype=np.float32), filter=flt)
    with pytest.raises(FilterError, match="filter too large"):
        engine.delete(filter=flt)
    assert _state(engine) == before
