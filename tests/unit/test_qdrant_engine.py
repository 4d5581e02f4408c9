"""index="qdrant" through the public Engine API: same calls, same errors as the flat index."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("qdrant_edge")
pytest.importorskip("qdrant_client")

from colmax import Engine
from colmax.errors import (
    DimensionMismatchError,
    FilterError,
    InvalidInputError,
    UnknownIdError,
)

DIM = 8


def vectors(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(int(rng.integers(1, 6)), DIM)).astype(np.float32) for _ in range(n)]


@pytest.fixture(params=["edge", "memory"])
def engine(request: pytest.FixtureRequest, tmp_path: Path):
    path = tmp_path / "idx" if request.param == "edge" else None
    eng = Engine(dim=DIM, index="qdrant", path=path)
    yield eng
    eng.close()


def test_engine_calls_match_the_flat_index(engine: Engine) -> None:
    vecs = vectors(20)
    ids = [f"d{i}" for i in range(20)]
    metas = [{"i": i, "kind": "odd" if i % 2 else "even"} for i in range(20)]
    flat = Engine(dim=DIM)
    for e in (engine, flat):
        assert e.add(embeddings=vecs, ids=ids, metadatas=metas) == ids
    q = vectors(3, seed=1)
    for flt in (None, {"kind": "odd"}, {"i": {"$gte": 15}}):
        got = engine.search(query_embeddings=q, k=5, filter=flt)
        want = flat.search(query_embeddings=q, k=5, filter=flt)
        for g, w in zip(got, want):
            assert [h.id for h in g] == [h.id for h in w]
            np.testing.assert_allclose([h.score for h in g], [h.score for h in w], atol=1e-3)
    assert engine.get(["d2"])[0].metadata == metas[2]
    assert engine.delete(["d2"]) == 1 and len(engine) == 19 and "d2" not in engine
    assert engine.ids() == [i for i in ids if i != "d2"]
    assert engine.info().index == "qdrant"
    flat.close()


def test_engine_errors_leave_the_index_unchanged(engine: Engine) -> None:
    engine.add(embeddings=vectors(3), ids=["a", "b", "c"])
    with pytest.raises(UnknownIdError):
        engine.delete(["a", "zzz"])
    with pytest.raises(DimensionMismatchError):
        engine.add(embeddings=[np.ones((2, DIM + 1))], ids=["x"])
    with pytest.raises(FilterError, match="cannot order strings"):
        engine.search(query_embeddings=vectors(1)[0], filter={"name": {"$gt": "m"}})
    assert engine.ids() == ["a", "b", "c"]


def test_metadata_integers_beyond_64_bits_are_refused(engine: Engine) -> None:
    """qdrant-edge gave 2**64 + 1 back as 1.8446744073709552e+19 (silently changed)."""
    engine.add(embeddings=vectors(1), ids=["a"], metadatas=[{"n": 2**63 - 1, "m": -(2**63)}])
    assert engine.get(["a"])[0].metadata == {"n": 2**63 - 1, "m": -(2**63)}
    for big in (2**64 + 1, -(2**63) - 1, [1, {"deep": 2**70}]):
        with pytest.raises(InvalidInputError, match="does not fit 64 bits"):
            engine.add(embeddings=vectors(2), ids=["a", "b"], metadatas=[{}, {"n": big}])
    assert engine.ids() == ["a"] and engine.get(["a"])[0].metadata["n"] == 2**63 - 1


def test_memory_mode_with_a_folder_is_refused(tmp_path: Path) -> None:
    """It was accepted, wrote a manifest, kept the documents in memory only and lost them at
    close (the folder then failed to open: 'an in-memory index has no folder')."""
    with pytest.raises(InvalidInputError, match="mode='memory' keeps nothing on disk"):
        Engine(dim=DIM, index="qdrant", path=tmp_path / "m", index_options={"mode": "memory"})
    assert not (tmp_path / "m" / "manifest.json").exists()


def test_save_and_load_through_the_engine(tmp_path: Path) -> None:
    engine = Engine(dim=DIM, index="qdrant", index_options={"prefetch": "mean"})
    engine.add(embeddings=vectors(10), ids=[str(i) for i in range(10)])
    q = vectors(1, seed=5)[0]
    before = [h.id for h in engine.search(query_embeddings=q, k=4)]
    engine.save(tmp_path / "saved")
    engine.close()
    manifest = json.loads((tmp_path / "saved" / "manifest.json").read_text())
    assert manifest["index"]["kind"] == "qdrant" and manifest["index"]["prefetch"] == "mean"
    with Engine.load(tmp_path / "saved") as loaded:
        assert [h.id for h in loaded.search(query_embeddings=q, k=4)] == before
    with pytest.raises(InvalidInputError, match="holds a 'qdrant' index"):
        Engine(dim=DIM, index="flat", path=tmp_path / "saved")


def test_text_engine_rerank_by_stored_ids(tiny_colbert_model: Path, tmp_path: Path) -> None:
    texts = ["the cat sat on the mat", "a dog barked", "stocks fell on monday", "rain tomorrow"]
    ids = [f"t{i}" for i in range(len(texts))]
    # float32: the two stores' rounding (float32 in Qdrant, float16 in flat) is what is compared
    qdrant = Engine.from_pretrained(
        tiny_colbert_model, index="qdrant", path=tmp_path / "q", dtype="float32"
    )
    flat = Engine.from_pretrained(tiny_colbert_model, device="cpu", dtype="float32")
    for e in (qdrant, flat):
        e.add(texts, ids=ids)
    got = qdrant.rerank("a cat on a mat", ids=ids)
    want = flat.rerank("a cat on a mat", ids=ids)
    assert [h.id for h in got] == [h.id for h in want]
    np.testing.assert_allclose([h.score for h in got], [h.score for h in want], atol=1e-3)
    assert [h.id for h in qdrant.search("a cat on a mat", k=2)] == [h.id for h in want[:2]]
    qdrant.close()
    with Engine.load(tmp_path / "q") as loaded:  # the encoder comes back from the manifest
        assert [h.id for h in loaded.search("a cat on a mat", k=2)] == [h.id for h in want[:2]]
