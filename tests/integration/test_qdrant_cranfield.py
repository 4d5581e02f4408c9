"""Acceptance of index="qdrant" on Cranfield with precomputed MiniLM vectors.

qdrant-edge (folder) must return the same top-10 ids as the flat index for every judged query
(225), with scores within 1e-3; qdrant-client's in-memory local mode likewise on every 5th
query over the first 400 documents, against a flat index of the same 400 (its Python scoring
is slow; ``benchmarks/bench_qdrant.py`` checks it on the whole corpus and all 225 queries);
filtered searches likewise (on subsets); and a reopened edge folder must answer exactly as
before.

Vectors come from the benchmark cache (``benchmarks/vectors_cache.py``) when it exists, else
from the session's ``cranfield_index`` (the shared flat index of the whole corpus) with the
queries encoded by its model, so nothing is encoded twice in a test session.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import pytest

pytest.importorskip("qdrant_edge")
pytest.importorskip("qdrant_client")

from colmax import Engine

pytestmark = pytest.mark.slow  # about 1.5 min on an idle 2-core machine (see the module doc)
REPO = Path(__file__).resolve().parents[2]
K = 10
TOL = 1e-3
# Ids may trade places only between documents whose exact scores are this close. colmax's flat
# index stores float16 (its scores are off by up to 3e-4 from float64 MaxSim of the same unit
# vectors on Cranfield), qdrant-edge float32 (off by 3e-6): a near-tie can go either way.
TIE = TOL


def _cached() -> tuple[list[str], list[np.ndarray], list[np.ndarray]] | None:
    cache = Path(os.environ.get("COLMAX_BENCH_CACHE", REPO / ".cache" / "bench"))
    folders = sorted(cache.glob("cranfield-*/info.json")) if cache.is_dir() else []
    if not folders:
        return None
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        from vectors_cache import CachedVectors
    finally:
        sys.path.pop(0)
    folder = folders[0].parent
    vecs = CachedVectors(
        folder,
        np.load(folder / "doc_tokens.npy", mmap_mode="r"),
        np.load(folder / "doc_offsets.npy"),
        json.loads((folder / "doc_ids.json").read_text()),
        np.load(folder / "query_tokens.npy"),
        np.load(folder / "query_offsets.npy"),
        json.loads((folder / "query_ids.json").read_text()),
        {},
        {},
    )
    docs = [np.asarray(d, dtype=np.float32) for d in vecs.docs()]
    return vecs.doc_ids, docs, [np.asarray(q, dtype=np.float32) for q in vecs.queries()]


def _from_index(
    request: pytest.FixtureRequest,
) -> tuple[list[str], list[np.ndarray], list[np.ndarray]]:
    from colmax.beir import load_beir

    index = request.getfixturevalue("cranfield_index")
    data = load_beir(request.getfixturevalue("cranfield_dir"))
    with Engine.load(index) as flat:
        ids = flat.ids()
        docs = [np.asarray(v, dtype=np.float32) for _, v in flat.backend.get_with_vectors(ids)]
        assert flat.encoder is not None
        queries = data.judged_queries()
        qvecs = flat.encoder.encode_queries(list(queries.values()))
    return ids, docs, [q.numpy() for q in qvecs]


def _metadata(i: int, doc: np.ndarray) -> dict[str, Any]:
    return {
        "bucket": i % 7,
        "tokens": len(doc),
        "long": len(doc) > 150,
        "tags": ["even" if i % 2 == 0 else "odd", f"m{i % 3}"],
    }


FILTERS = [
    {"bucket": {"$in": [1, 4]}},
    {"tokens": {"$gte": 120, "$lt": 200}},
    {"$or": [{"long": True}, {"tags": {"$contains": "m0"}}]},
    {"$not": {"bucket": {"$lte": 3}}, "tags": {"$contains": "odd"}},
    {"bucket": {"$ne": 2}, "long": False},
]


# Exact MaxSim over Cranfield costs ~6 GFLOP per query and index, so only the core check runs
# every query; the others take subsets.
# qdrant-client's local mode scores in Python/numpy, and adds slowly: it holds the first
# MEMORY_DOCS documents and answers 45 of the 225 queries.
MEMORY_DOCS = 400
MEMORY_EVERY = 5
FILTER_EVERY = 25  # filtered searches: 9 queries per filter
REOPEN_EVERY = 15


@pytest.fixture(scope="module")
def setup(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, Any]]:
    ids, docs, queries = _cached() or _from_index(request)
    metas = [_metadata(i, d) for i, d in enumerate(docs)]
    dim = docs[0].shape[1]
    folder = tmp_path_factory.mktemp("qdrant_cranfield") / "edge"
    built = {
        "flat": Engine(dim=dim),
        "edge": Engine(dim=dim, index="qdrant", path=folder),
        "memory": Engine(dim=dim, index="qdrant"),
    }
    # The flat index of the memory store's documents: its reference (closed below).
    built["memory_flat"] = Engine(dim=dim)
    for name, engine in built.items():
        n = MEMORY_DOCS if name.startswith("memory") else len(ids)
        for a in range(0, n, 250):
            b = min(a + 250, n)
            engine.add(embeddings=docs[a:b], ids=ids[a:b], metadatas=metas[a:b])
    flat = built["flat"]
    memory_flat = built["memory_flat"]
    expected = {
        "all": _search(flat, queries),
        "filtered": [_search(flat, queries[::FILTER_EVERY], f) for f in FILTERS],
        "memory_all": _search(memory_flat, queries[::MEMORY_EVERY]),
        "memory_filtered": [_search(memory_flat, queries[::FILTER_EVERY][:3], f) for f in FILTERS],
    }
    yield {
        "engines": built,
        "queries": queries,
        "folder": folder,
        "n": len(ids),
        "docs": dict(zip(ids, docs)),
        "ties": 0,
        **expected,
    }
    for engine in built.values():
        engine.close()


def _search(engine: Engine, queries: list[np.ndarray], flt: Any = None) -> list[list[Any]]:
    with _one_blas_thread(engine):
        return engine.search(query_embeddings=queries, k=K, filter=flt)  # type: ignore[return-value]


def _one_blas_thread(engine: Engine) -> Any:
    """qdrant-client's local mode scores document by document with numpy; on a busy 2-core
    machine OpenBLAS's threads spin (15x slower in a check here), so hold them to one."""
    if engine.path is not None or engine.info().index != "qdrant":
        return nullcontext()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return nullcontext()
    return threadpool_limits(1, user_api="blas")


def _unit(x: np.ndarray) -> np.ndarray:
    """As the engine normalises vectors (float32), then widened for an exact product."""
    x = np.asarray(x, dtype=np.float32)
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float64)


def _assert_same(
    got: list[list[Any]], want: list[list[Any]], setup: dict[str, Any], queries: list[np.ndarray]
) -> None:
    """Same ids rank by rank and scores within 1e-3, except that two documents whose exact
    MaxSim (float64, over the unit vectors the engines store) differs by less than ``TIE`` may
    trade places."""
    docs = setup["docs"]
    for j, (g, w) in enumerate(zip(got, want)):
        np.testing.assert_allclose([h.score for h in g], [h.score for h in w], atol=TOL)
        q = _unit(queries[j])
        for r, (a, b) in enumerate(zip(g, w)):
            if a.id != b.id:
                exact = [float((q @ _unit(docs[i]).T).max(1).sum()) for i in (a.id, b.id)]
                assert abs(exact[0] - exact[1]) < TIE, f"query {j} rank {r}: {a.id} vs {b.id}"
                setup["ties"] += 1
        assert len(g) == len(w)


def test_edge_same_top10_as_flat_for_every_query(setup: dict[str, Any]) -> None:
    edge = setup["engines"]["edge"]
    assert len(edge) == setup["n"]
    _assert_same(_search(edge, setup["queries"]), setup["all"], setup, setup["queries"])
    print(
        f"near-tie swaps against the flat index: {setup['ties']} of {10 * len(setup['all'])} ranks"
    )
    assert setup["ties"] <= 20


def test_client_local_same_top10_as_flat(setup: dict[str, Any]) -> None:
    memory = setup["engines"]["memory"]
    assert len(memory) == MEMORY_DOCS
    queries = setup["queries"][::MEMORY_EVERY]
    _assert_same(_search(memory, queries), setup["memory_all"], setup, queries)


@pytest.mark.parametrize("i", range(len(FILTERS)), ids=[json.dumps(f) for f in FILTERS])
def test_filters_as_flat(setup: dict[str, Any], i: int) -> None:
    want = setup["filtered"][i]
    assert all(len(w) == K for w in want)
    queries = setup["queries"][::FILTER_EVERY]
    _assert_same(_search(setup["engines"]["edge"], queries, FILTERS[i]), want, setup, queries)
    # the client: the first 3 of those queries, over its documents
    got = _search(setup["engines"]["memory"], queries[:3], FILTERS[i])
    _assert_same(got, setup["memory_filtered"][i], setup, queries)


def test_reopened_edge_folder_answers_the_same(setup: dict[str, Any]) -> None:
    edge = setup["engines"]["edge"]
    queries = setup["queries"][::REOPEN_EVERY]
    before = _search(edge, queries)
    edge.close()
    reopened = Engine.load(setup["folder"])
    setup["engines"]["edge"] = reopened
    assert reopened.info().index == "qdrant" and len(reopened) == setup["n"]
    for b, a in zip(before, _search(reopened, queries)):
        assert [(h.id, h.score) for h in a] == [(h.id, h.score) for h in b]
    queries = setup["queries"][::FILTER_EVERY]
    _assert_same(_search(reopened, queries, FILTERS[2]), setup["filtered"][2], setup, queries)
