"""Engine behaviour on precomputed vectors: no model needed, so every path is exercised fast."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from colmax import Engine, Hit
from colmax.errors import (
    ColmaxError,
    DimensionMismatchError,
    DuplicateIdError,
    EmptyTextError,
    FilterError,
    IndexFormatError,
    InvalidEmbeddingError,
    InvalidInputError,
    NoEncoderError,
    UnknownIdError,
)
from colmax.scoring.reference import maxsim_loop

DIM = 16


def unit_rows(rng: np.random.Generator, n: int, dim: int = DIM) -> np.ndarray:
    x = rng.normal(size=(n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def corpus(seed: int = 0, n: int = 40) -> tuple[list[str], list[np.ndarray], list[dict]]:
    rng = np.random.default_rng(seed)
    ids = [f"doc-{i}" for i in range(n)]
    vecs = [unit_rows(rng, int(rng.integers(1, 12))) for _ in range(n)]
    metas = [{"year": 2000 + i % 5, "even": i % 2 == 0} for i in range(n)]
    return ids, vecs, metas


def brute_force(query: np.ndarray, vecs: list[np.ndarray], ids: list[str], k: int) -> list[str]:
    # Reference over fp16-rounded vectors (what the index stores).
    scores = maxsim_loop([query], [v.astype(np.float16).astype(np.float32) for v in vecs])[0]
    order = sorted(range(len(ids)), key=lambda i: (-scores[i], i))
    return [ids[i] for i in order[:k]]


def state(engine: Engine) -> dict[str, tuple[str, dict]]:
    docs = engine.get(engine.ids())
    return {d.id: (d.text, d.metadata) for d in docs}


@pytest.fixture
def filled() -> tuple[Engine, list[str], list[np.ndarray], list[dict]]:
    ids, vecs, metas = corpus()
    engine = Engine(dim=DIM)
    engine.add([f"text {i}" for i in ids], ids=ids, metadatas=metas, embeddings=vecs)
    return engine, ids, vecs, metas


def test_search_matches_brute_force(filled: tuple) -> None:
    engine, ids, vecs, _ = filled
    rng = np.random.default_rng(7)
    for _ in range(5):
        q = unit_rows(rng, 6)
        hits = engine.search(query_embeddings=q, k=10)
        assert [h.id for h in hits] == brute_force(q, vecs, ids, 10)
        assert [h.rank for h in hits] == list(range(10))
        assert all(a.score >= b.score for a, b in zip(hits, hits[1:]))
        assert hits[0].text == f"text {hits[0].id}"


def test_scores_are_raw_maxsim_sums(filled: tuple) -> None:
    engine, ids, vecs, _ = filled
    q = unit_rows(np.random.default_rng(3), 5)
    hit = engine.search(query_embeddings=q, k=1)[0]
    ref = maxsim_loop([q], [vecs[ids.index(hit.id)].astype(np.float16).astype(np.float32)])[0, 0]
    assert hit.score == pytest.approx(ref, abs=5e-3)
    assert -5 <= hit.score <= 5


def test_torch_and_numpy_inputs_agree(filled: tuple) -> None:
    engine, *_ = filled
    q = unit_rows(np.random.default_rng(4), 4)
    a = engine.search(query_embeddings=q, k=5)
    b = engine.search(query_embeddings=torch.from_numpy(q), k=5)
    assert [h.id for h in a] == [h.id for h in b]


def test_batch_queries_return_one_list_each(filled: tuple) -> None:
    engine, ids, vecs, _ = filled
    rng = np.random.default_rng(5)
    qs = [unit_rows(rng, 3), unit_rows(rng, 7)]
    out = engine.search(query_embeddings=qs, k=3)
    assert len(out) == 2
    for q, hits in zip(qs, out):
        assert [h.id for h in hits] == brute_force(q, vecs, ids, 3)


def test_k_is_clamped_and_validated(filled: tuple) -> None:
    engine, ids, *_ = filled
    q = unit_rows(np.random.default_rng(1), 2)
    assert len(engine.search(query_embeddings=q, k=1000)) == len(ids)
    for bad in (0, -1, 2.5, True, "3"):
        with pytest.raises(InvalidInputError):
            engine.search(query_embeddings=q, k=bad)


def test_filters_restrict_results(filled: tuple) -> None:
    engine, ids, vecs, metas = filled
    q = unit_rows(np.random.default_rng(2), 4)
    hits = engine.search(query_embeddings=q, k=100, filter={"year": {"$gte": 2003}, "even": True})
    expected = [i for i, m in zip(ids, metas) if m["year"] >= 2003 and m["even"]]
    assert sorted(h.id for h in hits) == sorted(expected)
    sub = [ids.index(i) for i in expected]
    assert [h.id for h in hits] == brute_force(
        q, [vecs[i] for i in sub], [ids[i] for i in sub], 100
    )
    assert engine.search(query_embeddings=q, k=5, filter={"year": 1999}) == []
    with pytest.raises(FilterError):
        engine.search(query_embeddings=q, k=5, filter={"year": {"$like": 1}})


def test_upsert_replaces_text_metadata_and_vectors(filled: tuple) -> None:
    engine, ids, vecs, _ = filled
    target = unit_rows(np.random.default_rng(9), 3)
    engine.add(["replaced"], ids=[ids[5]], metadatas=[{"new": 1}], embeddings=[target])
    assert len(engine) == len(ids)
    doc = engine.get([ids[5]])[0]
    assert (doc.text, doc.metadata) == ("replaced", {"new": 1})
    hit = engine.search(query_embeddings=target, k=1)[0]
    assert hit.id == ids[5] and hit.score == pytest.approx(3.0, abs=1e-2)


def test_delete_and_unknown_ids(filled: tuple) -> None:
    engine, ids, *_ = filled
    before = state(engine)
    with pytest.raises(UnknownIdError, match="nope"):
        engine.delete([ids[0], "nope"])
    assert state(engine) == before  # no partial delete
    with pytest.raises(DuplicateIdError):
        engine.delete([ids[0], ids[0]])
    assert engine.delete([ids[0], ids[1]]) == 2
    assert len(engine) == len(ids) - 2 and ids[0] not in engine
    q = unit_rows(np.random.default_rng(0), 3)
    assert {h.id for h in engine.search(query_embeddings=q, k=100)} == set(ids[2:])
    with pytest.raises(UnknownIdError):
        engine.get([ids[0]])


@pytest.mark.parametrize(
    ("kwargs", "error"),
    [
        ({"documents": ["a", "  "], "embeddings": None}, EmptyTextError),
        ({"documents": ["a", 3]}, InvalidInputError),
        ({"documents": "just a string"}, InvalidInputError),
        ({"ids": ["x", "x"]}, DuplicateIdError),
        ({"ids": ["x"]}, InvalidInputError),
        ({"ids": ["x", ""]}, InvalidInputError),
        ({"ids": ["x", 7]}, InvalidInputError),
        ({"metadatas": [{}, {"v": float("nan")}]}, InvalidInputError),
        ({"metadatas": [{}, {"v": object()}]}, InvalidInputError),
        ({"metadatas": [{}]}, InvalidInputError),
        ({"embeddings": [np.ones((2, DIM)), np.ones((2, DIM + 1))]}, DimensionMismatchError),
        ({"embeddings": [np.ones((2, DIM)), np.full((2, DIM), np.nan)]}, InvalidEmbeddingError),
        ({"embeddings": [np.ones((2, DIM)), np.full((2, DIM), np.inf)]}, InvalidEmbeddingError),
        ({"embeddings": [np.ones((2, DIM)), np.zeros((2, DIM))]}, InvalidEmbeddingError),
        ({"embeddings": [np.ones((2, DIM)), np.ones((0, DIM))]}, InvalidEmbeddingError),
        ({"embeddings": [np.ones((2, DIM)), np.ones(DIM)]}, InvalidEmbeddingError),
        ({"embeddings": [np.ones((2, DIM)), [[1.0] * DIM]]}, InvalidEmbeddingError),
        ({"embeddings": [np.ones((2, DIM))]}, InvalidInputError),
    ],
)
def test_bad_add_raises_and_changes_nothing(filled: tuple, kwargs: dict, error: type) -> None:
    engine, *_ = filled
    before, n = state(engine), len(engine)
    args = {"documents": ["a", "b"], "ids": ["x", "y"], "embeddings": [np.ones((2, DIM))] * 2}
    args.update(kwargs)
    with pytest.raises(error) as info:
        engine.add(**args)
    assert isinstance(info.value, ColmaxError)
    assert state(engine) == before and len(engine) == n


def test_text_without_encoder_is_a_clear_error() -> None:
    engine = Engine(dim=DIM)
    with pytest.raises(NoEncoderError):
        engine.add(["hello"])
    with pytest.raises(NoEncoderError):
        engine.search("hello")


def test_skip_empty_drops_only_empty_documents() -> None:
    engine = Engine(dim=DIM)
    rng = np.random.default_rng(0)
    out = engine.add(
        ["a", " ", "c"], ids=["1", "2", "3"], embeddings=[unit_rows(rng, 2)] * 3, skip_empty=True
    )
    assert out == ["1", "3"] and engine.ids() == ["1", "3"]


def test_rerank_by_ids_uses_stored_vectors(filled: tuple) -> None:
    engine, ids, vecs, metas = filled
    q = unit_rows(np.random.default_rng(11), 4)
    cands = ids[10:20]
    hits = engine.rerank(None, ids=cands, query_embedding=q, k=4)
    ref = maxsim_loop(
        [q], [vecs[ids.index(c)].astype(np.float16).astype(np.float32) for c in cands]
    )[0]
    best = [cands[i] for i in np.argsort(-ref, kind="stable")[:4]]
    assert [h.id for h in hits] == best
    assert hits[0].metadata == metas[ids.index(best[0])]
    with pytest.raises(UnknownIdError):
        engine.rerank(None, ids=["nope"], query_embedding=q)
    with pytest.raises(InvalidInputError):
        engine.rerank(None, query_embedding=q)
    assert engine.rerank(None, ids=[], query_embedding=q) == []


def test_many_small_writes_merge_segments_and_stay_correct() -> None:
    ids, vecs, _ = corpus(seed=3, n=30)
    engine = Engine(dim=DIM)
    for i, v in zip(ids, vecs):
        engine.add([i], ids=[i], embeddings=[v])
    engine.delete(ids[:10])
    info = engine.info()
    assert info.details["segments"] <= 9 and info.documents == 20
    q = unit_rows(np.random.default_rng(8), 5)
    assert [h.id for h in engine.search(query_embeddings=q, k=20)] == brute_force(
        q, vecs[10:], ids[10:], 20
    )


def test_save_load_round_trip(tmp_path: Path, filled: tuple) -> None:
    engine, ids, vecs, _ = filled
    engine.delete(ids[:3])
    q = unit_rows(np.random.default_rng(12), 5)
    before = engine.search(query_embeddings=q, k=15, filter={"even": True})
    engine.save(tmp_path / "idx")
    loaded = Engine.load(tmp_path / "idx")
    after = loaded.search(query_embeddings=q, k=15, filter={"even": True})
    assert [(h.id, h.rank, h.text, h.metadata) for h in after] == [
        (h.id, h.rank, h.text, h.metadata) for h in before
    ]
    # The saved copy is repacked into one segment: same vectors, float32 summation order may differ.
    np.testing.assert_allclose(
        [h.score for h in after], [h.score for h in before], rtol=0, atol=1e-5
    )
    assert len(loaded) == len(engine) and state(loaded) == state(engine)
    manifest = json.loads((tmp_path / "idx" / "manifest.json").read_text())
    assert manifest["format"] == "colmax-index" and manifest["dim"] == DIM
    assert manifest["counts"]["documents"] == len(ids) - 3
    # Saving again over the same index replaces its contents.
    engine.delete([ids[3]])
    engine.save(tmp_path / "idx")
    assert ids[3] not in Engine.load(tmp_path / "idx")


def test_folder_engine_commits_every_write(tmp_path: Path) -> None:
    ids, vecs, metas = corpus(seed=1, n=12)
    engine = Engine(dim=DIM, path=tmp_path / "live")
    engine.add(ids, ids=ids, metadatas=metas, embeddings=vecs)
    engine.delete(ids[:2])
    other = Engine.load(tmp_path / "live")  # a second reader sees committed state
    assert sorted(other.ids()) == sorted(ids[2:])
    engine.add(["late"], ids=["late"], embeddings=[vecs[0]])
    assert "late" in other.ids() and len(other) == 11  # picks up the new generation
    q = vecs[0]
    assert other.search(query_embeddings=q, k=1)[0].id == "late"


def test_save_refuses_foreign_folder(tmp_path: Path, filled: tuple) -> None:
    engine, *_ = filled
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("precious")
    with pytest.raises(IndexFormatError, match="will not overwrite"):
        engine.save(tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "precious"


def test_load_rejects_foreign_and_damaged_folders(tmp_path: Path, filled: tuple) -> None:
    engine, *_ = filled
    with pytest.raises(IndexFormatError, match="manifest.json is missing"):
        Engine.load(tmp_path)
    path = engine.save(tmp_path / "idx")
    manifest = path / "manifest.json"
    original = manifest.read_text()
    for bad in (
        "{not json",
        json.dumps({"format": "other"}),
        original.replace('"format_version": 1', '"format_version": 99'),
    ):
        manifest.write_text(bad)
        with pytest.raises(IndexFormatError, match="manifest.json"):
            Engine.load(path)
    manifest.write_text(original.replace(f'"dim": {DIM}', '"dim": 4'))
    with pytest.raises(IndexFormatError, match="damaged segment"):
        Engine.load(path)
    manifest.write_text(original)
    seg = next((path / "segments").glob("*.tokens.npy"))
    data = seg.read_bytes()
    seg.write_bytes(data[: len(data) // 2])
    with pytest.raises(IndexFormatError, match=seg.name.split(".")[0]):
        Engine.load(path)
    seg.unlink()
    with pytest.raises(IndexFormatError, match="missing"):
        Engine.load(path)
    (path / "documents.sqlite").write_bytes(b"garbage" * 100)
    with pytest.raises(IndexFormatError, match="documents.sqlite"):
        Engine.load(path)


def test_hits_are_independent_copies(filled: tuple) -> None:
    engine, *_ = filled
    q = unit_rows(np.random.default_rng(0), 2)
    hit = engine.search(query_embeddings=q, k=1)[0]
    assert isinstance(hit, Hit)
    hit.metadata["year"] = -1
    assert engine.search(query_embeddings=q, k=1)[0].metadata["year"] != -1
