"""colmax filters on Qdrant give exactly the SQLite (flat index) results, or raise FilterError.

The differential test stores the same awkward metadata (arrays vs scalars, 2 vs 2.0, True vs 1,
nulls, nested objects, dotted keys) in qdrant-edge and in qdrant-client's local mode, and
compares the ids every filter selects with what ``compile_filter`` selects in SQLite.
"""

from __future__ import annotations

import json
import random
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

pytest.importorskip("qdrant_edge")
pytest.importorskip("qdrant_client")

from colmax.backends.qdrant import QdrantBackend
from colmax.backends.qdrant.filters import Clause, Match, Range, filter_fields, translate
from colmax.errors import FilterError
from colmax.filters import compile_filter
from colmax.validation import metadata_json

DIM = 4
DOCS: dict[str, dict[str, Any]] = {
    "a": {"year": 2020, "lang": "en", "draft": False, "tags": ["news", "tech"], "score": 0.5},
    "b": {"year": 2024, "lang": "de", "draft": True, "tags": ["tech"]},
    "c": {"year": "2024", "lang": "en", "tags": "news"},
    "d": {"lang": None, "tags": [], "year": 2024.0},
    "e": {},
    "f": {"year": 1, "draft": 1, "tags": [1, True, None, [2]], "a.b": "dot"},
    "g": {"year": True, "lang": ["en"], "tags": {"x": "news", "y": 2}, "a": {"b": "dot"}},
    "h": {"year": -3.5, "score": 2**60, "lang": "", "tags": [0.5, "0.5"], "draft": None},
    "i": {"year": [2020, 2024], "draft": "true", "score": -0.0, "ünï": "ok"},
}


def _create(path, dim, encoder_config=None, **options):  # type: ignore[no-untyped-def]
    """``QdrantBackend.create`` with the registry's (folder, manifest, options) signature."""
    from colmax.backends.base import BackendOptions
    from colmax.store.manifest import Manifest

    manifest = Manifest(dim=dim, index_kind="qdrant", encoder=encoder_config)
    return QdrantBackend.create(path, manifest, BackendOptions(options))


def _open(path, manifest, **options):  # type: ignore[no-untyped-def]
    from colmax.backends.base import BackendOptions

    return QdrantBackend.open(path, manifest, BackendOptions(options))


@pytest.fixture(scope="module")
def sqlite_db() -> sqlite3.Connection:
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE TABLE documents (id TEXT, metadata TEXT)")
    conn.executemany(
        "INSERT INTO documents VALUES (?, ?)", [(k, metadata_json(v)) for k, v in DOCS.items()]
    )
    return conn


def _backend(mode: str, folder: Path) -> QdrantBackend:
    options = {} if mode == "memory" else {"mode": mode}
    path = None if mode == "memory" else folder / mode
    backend = _create(path, DIM, encoder_config=None, **options)
    vectors = [np.eye(DIM, dtype=np.float32)[:1] for _ in DOCS]
    backend.upsert(list(DOCS), ["t"] * len(DOCS), list(DOCS.values()), vectors)
    return backend


@pytest.fixture(scope="module", params=["edge", "memory"])
def backend(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[QdrantBackend]:
    b = _backend(request.param, tmp_path_factory.mktemp("qf"))
    yield b
    b.close()


def flat(db: sqlite3.Connection, flt: Any) -> set[str]:
    where, params = compile_filter(flt)
    return {r[0] for r in db.execute(f"SELECT id FROM documents WHERE {where}", params)}


def qdrant(backend: QdrantBackend, flt: Any) -> set[str]:
    hits = backend.search([torch.eye(DIM)[:1]], k=len(DOCS) + 5, filter=flt)[0]
    return {h.id for h in hits}


CASES = [
    None,
    {},
    {"year": 2024},  # 2024.0 matches, "2024" and [2020, 2024] do not
    {"year": "2024"},
    {"year": 1},  # True is not 1
    {"year": True},
    {"draft": True},
    {"draft": False},
    {"draft": "true"},
    {"draft": 1},
    {"draft": None},
    {"lang": None},
    {"lang": ""},
    {"lang": "en"},  # ["en"] does not equal "en"
    {"year": {"$ne": 2024}},
    {"lang": {"$ne": None}},
    {"year": {"$gte": 2021}},
    {"year": {"$gt": 0, "$lt": 2024}},
    {"year": {"$lte": -3.5}},
    {"score": {"$lt": 0}},
    {"score": 0},  # -0.0 == 0
    {"score": {"$gt": 1e15}},  # 2**60 is stored inexactly, still ordered right
    {"lang": {"$in": ["en", "de", None]}},
    {"year": {"$in": [2024, "2024", True]}},
    {"lang": {"$nin": ["en"]}},
    {"lang": {"$in": []}},
    {"lang": {"$nin": []}},
    {"tags": {"$contains": "news"}},  # array element, object value and the scalar itself
    {"tags": {"$contains": 1}},  # 1 in [1, True, ...]; True does not count
    {"tags": {"$contains": True}},
    {"tags": {"$contains": 2}},  # object value 2; [2] nested one level deeper does not
    {"tags": {"$contains": 0.5}},
    {"tags": {"$contains": "0.5"}},
    {"year": {"$contains": 2024}},
    {"lang": {"$exists": True}},
    {"lang": {"$exists": False}},
    {"draft": {"$exists": True}},
    {"a.b": "dot"},  # a literal key with a dot, not the nested path
    {"a.b": {"$exists": True}},
    {"ünï": "ok"},
    {"$or": [{"year": 2020}, {"lang": "de"}]},
    {"$and": [{"lang": "en"}, {"year": {"$exists": True}}]},
    {"$not": {"lang": "en"}},
    {"$not": {}},
    {"$or": [{"lang": {"$in": []}}, {"draft": True}]},
    {"$or": [{}, {"draft": True}]},
    {"$not": {"$or": [{"year": {"$gte": 2024}}, {"tags": {"$contains": "tech"}}]}},
    {"lang": "en", "year": {"$ne": "2024"}},
]


@pytest.mark.parametrize("flt", CASES, ids=[json.dumps(c) for c in CASES])
def test_same_results_as_sqlite(
    backend: QdrantBackend, sqlite_db: sqlite3.Connection, flt: Any
) -> None:
    assert qdrant(backend, flt) == flat(sqlite_db, flt)


def _random_filter(rng: random.Random, depth: int = 0) -> dict[str, Any]:
    if depth < 2 and rng.random() < 0.3:
        op = rng.choice(["$and", "$or", "$not"])
        if op == "$not":
            return {"$not": _random_filter(rng, depth + 1)}
        return {op: [_random_filter(rng, depth + 1) for _ in range(rng.randint(1, 3))]}
    field = rng.choice(["year", "lang", "draft", "tags", "score", "a.b", "missing"])
    values: list[Any] = [2024, 2024.0, "2024", 1, True, False, None, "en", "news", 0.5, -3.5, 0]
    op = rng.choice(["eq", "$ne", "$in", "$nin", "$gt", "$lte", "$contains", "$exists"])
    if op == "eq":
        return {field: rng.choice(values)}
    if op in ("$in", "$nin"):
        return {field: {op: rng.sample(values, rng.randint(0, 3))}}
    if op in ("$gt", "$lte"):
        return {field: {op: rng.choice([2020, 0, -3.5, 1e15])}}
    if op == "$contains":
        return {field: {op: rng.choice([v for v in values if v is not None])}}
    if op == "$exists":
        return {field: {op: rng.random() < 0.5}}
    return {field: {op: rng.choice(values)}}


def test_random_filters_match_sqlite(backend: QdrantBackend, sqlite_db: sqlite3.Connection) -> None:
    rng = random.Random(7)
    for _ in range(150):
        flt = _random_filter(rng)
        assert qdrant(backend, flt) == flat(sqlite_db, flt), flt


@pytest.mark.parametrize(
    ("flt", "what"),
    [
        ({"lang": {"$gt": "de"}}, "cannot order strings"),
        ({"year": {"$gte": 2**53}}, "too large"),
        ({"year": -(2**60)}, "too large"),
        ({"tags": {"$contains": 2.0**53}}, "too large"),
        ({"year": {"$regex": "x"}}, "unknown filter operator"),  # the local backend's message
        ({"$or": []}, "non-empty list"),
    ],
)
def test_inexpressible_or_malformed_filters_raise(
    backend: QdrantBackend, flt: Any, what: str
) -> None:
    with pytest.raises(FilterError, match=what):
        translate(flt)
    with pytest.raises(FilterError, match=what):
        backend.search([torch.eye(DIM)[:1]], k=3, filter=flt)


def test_translation_shape() -> None:
    assert translate({"year": 2024}) == Range("colmax_f.n.k_year", gte=2024.0, lte=2024.0)
    assert translate({"draft": True}) == Match("colmax_f.b.k_draft", ("true",))
    # $in over strings becomes one MatchAny; the null alternative stays a separate branch
    assert translate({"lang": {"$in": ["en", "de", None]}}) == Clause(
        should=(Match("colmax_f.s.k_lang", ("en", "de")), Match("colmax_f.nulls", ("k_lang",)))
    )
    assert translate({"lang": {"$nin": []}}) is True
    assert translate({"$not": {}}) is False


def test_filter_fields_keep_types_apart() -> None:
    fields = filter_fields({"n": 2, "f": 2.5, "b": True, "s": "x", "z": None, "l": [1, "a", False]})
    assert fields["n"] == {"k_n": 2.0, "k_f": 2.5}
    assert fields["b"] == {"k_b": "true"}
    assert fields["s"] == {"k_s": "x"}
    assert fields["nulls"] == ["k_z"]
    assert fields["cn"]["k_l"] == [1.0] and fields["cs"]["k_l"] == ["a"]
    assert fields["cb"]["k_l"] == ["false"]
    assert "k_l" not in fields["n"] and "k_l" not in fields["s"]  # arrays never $eq
