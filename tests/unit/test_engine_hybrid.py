"""Hybrid search through the engine: fusion equals colmax.hybrid, BM25 kept current, filters."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from colmax import Engine
from colmax.errors import InvalidInputError
from colmax.hybrid import BM25Index, hybrid_search
from colmax.hybrid.side import BM25_DIR

DOCS = {
    "cat": ("the cat sat on the mat", {"year": 2020, "topic": "pets"}),
    "dog": ("the dog ran to the house", {"year": 2021, "topic": "pets"}),
    "paris": ("paris is the capital of france", {"year": 2022, "topic": "travel"}),
    "car": ("a big red car and a small blue car", {"year": 2023, "topic": "cars"}),
    "zoo": ("zebras and giraffes at the city zoo", {"year": 2024, "topic": "pets"}),
    "tram": ("the tram crosses the city", {"year": 2025, "topic": "travel"}),
}
QUERY = "zebras in the city"


def _fill(engine: Engine) -> Engine:
    engine.add(
        [t for t, _ in DOCS.values()], ids=list(DOCS), metadatas=[m for _, m in DOCS.values()]
    )
    return engine


@pytest.fixture
def engine(tiny_colbert_model: Path) -> Engine:
    return _fill(Engine.from_pretrained(tiny_colbert_model, device="cpu"))


@pytest.fixture
def folder_engine(tiny_colbert_model: Path, tmp_path: Path) -> Engine:
    return _fill(Engine.from_pretrained(tiny_colbert_model, device="cpu", path=tmp_path / "idx"))


@pytest.mark.parametrize("mode", ["rrf", "minmax", "rerank"])
@pytest.mark.parametrize("weight", [0.5, 0.8])
def test_fusion_equals_hybrid_search_computed_directly(
    engine: Engine, mode: str, weight: float
) -> None:
    hits = engine.search(QUERY, k=4, hybrid=mode, candidates=5, weight=weight)
    bm25 = BM25Index(list(DOCS), [t for t, _ in DOCS.values()])
    expected = hybrid_search(
        4,
        bm25=lambda n: bm25.search(QUERY, n),
        late=lambda n: [(h.id, h.score) for h in engine.search(QUERY, k=n)],  # type: ignore[union-attr]
        rerank=lambda ids: [(h.id, h.score) for h in engine.rerank(QUERY, ids=ids)],
        mode=mode,
        candidates=5,
        weight=weight,
    )
    assert [h.id for h in hits] == [f.id for f in expected]
    assert [h.rank for h in hits] == list(range(len(hits)))
    for hit, f in zip(hits, expected):
        assert hit.score == pytest.approx(f.score, abs=1e-3 if mode == "rerank" else 1e-9)
        assert hit.scores is not None
        assert hit.scores.get("bm25") == (
            None if f.bm25_score is None else pytest.approx(f.bm25_score)
        )
        late = hit.scores.get("late")
        assert (late is None) == (f.late_score is None)
        if late is not None:
            assert late == pytest.approx(f.late_score, abs=1e-3)
        assert (hit.text, hit.metadata) == (DOCS[hit.id][0], DOCS[hit.id][1])
    assert "zoo" in [h.id for h in hits]  # the only document with the query's rare words


def test_plain_search_is_unchanged(engine: Engine) -> None:
    assert all(h.scores is None for h in engine.search(QUERY, k=6))


def test_writes_keep_the_bm25_side_current(folder_engine: Engine) -> None:
    def bm25_ids() -> set[str]:
        hits = folder_engine.search("giraffes", k=6, hybrid="rrf")
        return {h.id for h in hits if "bm25" in (h.scores or {})}  # type: ignore[union-attr]

    assert bm25_ids() == {"zoo"}
    folder_engine.delete(["zoo"])
    assert bm25_ids() == set()
    assert "zoo" not in {h.id for h in folder_engine.search("giraffes", k=6, hybrid="rerank")}  # type: ignore[union-attr]
    folder_engine.add(["giraffes eat leaves"], ids=["leaves"])
    assert bm25_ids() == {"leaves"}
    folder_engine.add(["nothing about those animals"], ids=["leaves"])  # upsert changes the text
    assert bm25_ids() == set()


def test_the_bm25_cache_is_saved_reused_and_follows_other_writers(
    folder_engine: Engine, tiny_colbert_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = folder_engine.path
    assert path is not None and not (path / BM25_DIR).exists()  # built on first use only
    first = folder_engine.search(QUERY, k=3, hybrid="rrf")
    meta = json.loads((path / BM25_DIR / "colmax-bm25.json").read_text())
    assert meta["generation"] == folder_engine.info().generation
    assert sorted(meta["ids"]) == sorted(DOCS)

    other = Engine.load(path, device="cpu")
    calls: list[int] = []
    snapshot = other.backend.text_snapshot
    monkeypatch.setattr(other.backend, "text_snapshot", lambda: calls.append(1) or snapshot())
    assert [h.id for h in other.search(QUERY, k=3, hybrid="rrf")] == [h.id for h in first]  # type: ignore[union-attr]
    assert calls == []  # loaded from bm25/, not rebuilt
    # A write by another engine on the same folder: the next hybrid search rebuilds.
    folder_engine.add(["zebras zebras zebras in the city"], ids=["herd"])
    hits = other.search(QUERY, k=2, hybrid="rerank", candidates=2)
    assert {h.id for h in hits} == {"herd", "zoo"}  # type: ignore[union-attr]  # BM25's two
    assert calls == [1]
    other.close()


@pytest.mark.parametrize("mode", ["rrf", "minmax", "rerank"])
def test_filters_apply_to_both_sides(engine: Engine, mode: str) -> None:
    flt = {"topic": "travel"}
    hits = engine.search("zebras city tram", k=6, filter=flt, hybrid=mode)
    assert hits and all(h.metadata["topic"] == "travel" for h in hits)  # type: ignore[union-attr]
    assert "zoo" not in {h.id for h in hits}  # type: ignore[union-attr]  # BM25 matched it
    assert "tram" in {h.id for h in hits if "bm25" in (h.scores or {})}  # type: ignore[union-attr]
    only = engine.search("zebras city", k=6, filter={"year": 2024}, hybrid=mode, candidates=1)
    assert [h.id for h in only] == ["zoo"]  # type: ignore[union-attr]
    none = engine.search(QUERY, k=6, filter={"year": 1900}, hybrid=mode)
    assert none == []


def test_queries_lists_and_explanations(engine: Engine) -> None:
    results = engine.search([QUERY, "capital of france"], k=2, hybrid="rrf", explain=True)
    assert len(results) == 2
    for query, hits in zip([QUERY, "capital of france"], results):
        assert hits == engine.search(query, k=2, hybrid="rrf", explain=True)
        for hit in hits:  # type: ignore[union-attr]
            e = hit.explanation
            assert e is not None and e.query == query and e.id == hit.id
            if "late" in hit.scores:
                assert e.score == pytest.approx(hit.scores["late"], abs=5e-3)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"hybrid": "bm25"}, "hybrid must be None or one of"),
        ({"hybrid": "rrf", "candidates": 0}, "candidates must be"),
        ({"hybrid": "rrf", "weight": 1.5}, "weight must be"),
        ({"hybrid": "rrf", "weight": True}, "weight must be"),
    ],
)
def test_bad_options(engine: Engine, kwargs: dict, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        engine.search(QUERY, **kwargs)


def test_hybrid_needs_text_and_bm25s(engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(InvalidInputError, match="text query"):
        engine.search(query_embeddings=np.eye(16)[:2], hybrid="rrf")
    monkeypatch.setitem(sys.modules, "bm25s", None)
    with pytest.raises(InvalidInputError, match=r'pip install "colmax\[hybrid\]"'):
        engine.search(QUERY, hybrid="rrf")


def test_an_empty_index(tiny_colbert_model: Path, tmp_path: Path) -> None:
    engine = Engine.from_pretrained(tiny_colbert_model, device="cpu", path=tmp_path / "e")
    assert engine.search(QUERY, hybrid="rrf") == []
    engine.add(["zebras"], ids=["z"])
    assert [h.id for h in engine.search(QUERY, hybrid="minmax")] == ["z"]  # type: ignore[union-attr]


def test_qdrant_says_hybrid_is_unavailable(tiny_colbert_model: Path, tmp_path: Path) -> None:
    pytest.importorskip("qdrant_edge")
    engine = Engine.from_pretrained(
        tiny_colbert_model, device="cpu", index="qdrant", path=tmp_path / "q"
    )
    engine.add(["zebras in the city"], ids=["z"])
    with pytest.raises(InvalidInputError, match="not available for index='qdrant'"):
        engine.search(QUERY, hybrid="rrf")
    assert [h.id for h in engine.search(QUERY)] == ["z"]  # type: ignore[union-attr]
    engine.close()


@pytest.mark.parametrize("mode", ["rrf", "minmax"])
def test_hybrid_over_documents_without_terms_is_late_interaction(
    tiny_colbert_model: Path, mode: str
) -> None:
    # Stopwords only (as page images without text): BM25 has no vocabulary; the search
    # raised bm25s' ValueError, now the late side alone ranks.
    engine = Engine.from_pretrained(tiny_colbert_model, device="cpu")
    engine.add(["to be or not to be", "4 x 4"], ids=["hamlet", "math"])
    late = engine.search("to be", k=2)
    hits = engine.search("to be", k=2, hybrid=mode)
    assert [h.id for h in hits] == [h.id for h in late]
    assert all(set(h.scores or {}) == {"late"} for h in hits)


def test_terms_added_later_reach_the_bm25_side(tiny_colbert_model: Path, tmp_path: Path) -> None:
    # The BM25 cache of documents without terms is our metadata file alone; it loads, and
    # the next write that brings terms rebuilds it.
    path = tmp_path / "idx"
    engine = Engine.from_pretrained(tiny_colbert_model, device="cpu", path=path)
    engine.add(["to be or not to be", "4 x 4"], ids=["hamlet", "math"])
    assert [h.id for h in engine.search(QUERY, k=2, hybrid="rrf")] == [
        h.id for h in engine.search(QUERY, k=2)
    ]
    saved = json.loads((path / BM25_DIR / "colmax-bm25.json").read_text())
    assert saved["terms"] is False and [p.name for p in (path / BM25_DIR).iterdir()] == [
        "colmax-bm25.json"
    ]
    reopened = Engine.from_pretrained(tiny_colbert_model, device="cpu", path=path)
    assert len(reopened.search(QUERY, k=2, hybrid="minmax")) == 2
    reopened.add(["zebras in the city"], ids=["zoo"])
    hits = {h.id: h for h in reopened.search(QUERY, k=3, hybrid="rrf")}
    assert set(hits) == {"hamlet", "math", "zoo"} and "bm25" in (hits["zoo"].scores or {})
