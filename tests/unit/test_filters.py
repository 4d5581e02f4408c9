from __future__ import annotations

import json
import sqlite3

import pytest

from colmax.errors import FilterError
from colmax.filters import compile_filter

DOCS = {
    "a": {"year": 2020, "lang": "en", "draft": False, "tags": ["news", "tech"], "score": 0.5},
    "b": {"year": 2024, "lang": "de", "draft": True, "tags": ["tech"]},
    "c": {"year": "2024", "lang": "en"},
    "d": {"lang": None, "tags": []},
    "e": {},
}


@pytest.fixture(scope="module")
def db() -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE documents (id TEXT, metadata TEXT)")
    conn.executemany(
        "INSERT INTO documents VALUES (?, ?)", [(k, json.dumps(v)) for k, v in DOCS.items()]
    )
    return conn


def run(db: sqlite3.Connection, flt: object) -> set[str]:
    where, params = compile_filter(flt)  # type: ignore[arg-type]
    return {r[0] for r in db.execute(f"SELECT id FROM documents WHERE {where}", params)}


@pytest.mark.parametrize(
    ("flt", "expected"),
    [
        (None, set("abcde")),
        ({}, set("abcde")),
        ({"year": 2024}, {"b"}),  # typed: the string "2024" does not match
        ({"year": "2024"}, {"c"}),
        ({"year": {"$eq": 2020}}, {"a"}),
        ({"year": {"$ne": 2020}}, set("bcde")),  # missing fields match $ne
        ({"year": {"$gte": 2021}}, {"b"}),
        ({"year": {"$gt": 2019, "$lt": 2024}}, {"a"}),
        ({"year": {"$lte": 2024}}, {"a", "b"}),
        ({"lang": {"$in": ["en", "fr"]}}, {"a", "c"}),
        ({"lang": {"$nin": ["en"]}}, {"b", "d", "e"}),
        ({"lang": {"$in": []}}, set()),
        ({"lang": None}, {"d"}),
        ({"draft": True}, {"b"}),
        ({"draft": False}, {"a"}),
        ({"score": 0.5}, {"a"}),
        ({"tags": {"$contains": "news"}}, {"a"}),
        ({"tags": {"$contains": "tech"}}, {"a", "b"}),
        ({"lang": {"$exists": True}}, {"a", "b", "c", "d"}),
        ({"lang": {"$exists": False}}, {"e"}),
        ({"lang": "en", "year": 2020}, {"a"}),
        ({"$or": [{"year": 2020}, {"lang": "de"}]}, {"a", "b"}),
        ({"$and": [{"lang": "en"}, {"year": {"$exists": True}}]}, {"a", "c"}),
        ({"$not": {"lang": "en"}}, {"b", "d", "e"}),
        ({"lang": "x' OR 1=1 --"}, set()),  # values are bound parameters
        ({"x') OR 1=1 --": 1}, set()),  # so are field names
    ],
)
def test_filter_semantics(db: sqlite3.Connection, flt: object, expected: set[str]) -> None:
    assert run(db, flt) == expected


@pytest.mark.parametrize(
    "flt",
    [
        {"year": {"$regex": "x"}},
        {"$nor": []},
        {"$or": []},
        {"$or": {"a": 1}},
        {"year": {"$in": 5}},
        {"year": {"$gt": [1]}},
        {"year": {"$gt": True}},
        {"year": {"$gt": float("nan")}},
        {"year": {"$eq": {"a": 1}}},
        {"year": {}},
        {'a"b': 1},
        {"": 1},
        {3: 1},
        {"year": 2**70},
        {"lang": {"$exists": "yes"}},
        "year = 1",
        [{"year": 1}],
    ],
)
def test_bad_filters_raise(flt: object) -> None:
    with pytest.raises(FilterError):
        compile_filter(flt)  # type: ignore[arg-type]


def test_deep_nesting_is_bounded() -> None:
    flt: dict = {"year": 1}
    for _ in range(100):
        flt = {"$not": flt}
    with pytest.raises(FilterError, match="deeper"):
        compile_filter(flt)


def test_a_filter_is_parsed_once_into_one_tree_every_compiler_takes() -> None:
    from colmax.backends.qdrant.filters import translate
    from colmax.filters import AllOf, Condition, Not, parse_filter, to_sql

    flt = {"year": {"$gte": 2021}, "$not": {"lang": "de"}}
    tree = parse_filter(flt)
    assert tree == AllOf((Condition("year", "$gte", 2021), Not(Condition("lang", "$eq", "de"))))
    assert parse_filter(tree) is tree  # a tree passes through: no second parse
    assert to_sql(tree) == to_sql(flt) == compile_filter(flt)
    assert translate(tree) == translate(flt)


def test_the_old_module_path_still_works_and_says_where_it_moved() -> None:
    import importlib
    import sys

    sys.modules.pop("colmax.store.filters", None)
    with pytest.warns(DeprecationWarning, match="colmax.filters"):
        old = importlib.import_module("colmax.store.filters")
    assert old.compile_filter is compile_filter
