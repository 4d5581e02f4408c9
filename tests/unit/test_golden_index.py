"""Index folders written by earlier colmax versions keep loading (format version 1)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from colmax import Engine

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "index_v1"


def test_index_v1_loads_and_answers(tmp_path: Path) -> None:
    folder = shutil.copytree(FIXTURE, tmp_path / "index_v1")
    engine = Engine.load(folder)
    assert engine.encoder is None and engine.dim == 8
    assert sorted(engine.ids()) == ["alpha", "beta", "gamma"]
    assert engine.get(["gamma"])[0].metadata == {"n": 3, "lang": "ünï"}
    eye = np.eye(8, dtype=np.float32)
    hits = engine.search(query_embeddings=eye[2:4], k=3)
    assert hits[0].id == "beta" and hits[0].score == 2.0
    assert [
        h.id
        for h in engine.search(query_embeddings=eye[:1], k=3, filter={"tags": {"$contains": "x"}})
    ] == ["alpha"]
    # Still writable: the next generation appends to the old one.
    engine.add(["delta"], ids=["delta"], embeddings=[eye[7:8]])
    assert len(Engine.load(folder)) == 4


PLAID = Path(__file__).resolve().parents[1] / "fixtures" / "plaid_v1"
EDGE = Path(__file__).resolve().parents[1] / "fixtures" / "qdrant_edge_v1.tar.gz"


def _answers(engine: Engine) -> None:
    """What the golden folders answer (the same documents as index_v1)."""
    eye = np.eye(8, dtype=np.float32)
    assert engine.encoder is None and engine.dim == 8
    assert engine.get(["gamma"])[0].metadata == {"n": 3, "lang": "ünï"}
    assert "gone" not in engine
    hits = engine.search(query_embeddings=eye[2:4], k=3)
    assert hits[0].id == "beta" and abs(hits[0].score - 2.0) < 0.05
    tagged = engine.search(query_embeddings=eye[:1], k=3, filter={"tags": {"$contains": "x"}})
    assert [h.id for h in tagged] == ["alpha"]


def test_plaid_v1_loads_and_answers(tmp_path: Path) -> None:
    folder = shutil.copytree(PLAID, tmp_path / "plaid_v1")
    engine = Engine.load(folder)
    info = engine.info()
    assert info.index == "plaid" and info.details["plaid"]["trained"]
    assert sorted(engine.ids()) == ["alpha", "beta", "delta", "gamma"]
    _answers(engine)
    assert engine.search(query_embeddings=np.eye(8, dtype=np.float32)[7:8], k=1)[0].id in {
        "delta",
        "gamma",
    }
    engine.add(["epsilon"], ids=["epsilon"], embeddings=[np.eye(8, dtype=np.float32)[3:4]])
    engine.close()
    assert len(Engine.load(folder)) == 5


def test_qdrant_edge_v1_loads_and_answers(tmp_path: Path) -> None:
    import tarfile

    pytest.importorskip("qdrant_edge", reason='pip install "colmax[qdrant]"')
    with tarfile.open(EDGE) as archive:
        archive.extractall(tmp_path, filter="data")
    folder = tmp_path / "qdrant_edge_v1"
    engine = Engine.load(folder)
    assert engine.info().index == "qdrant" and engine.info().details["mode"] == "edge"
    assert sorted(engine.ids()) == ["alpha", "beta", "gamma"]
    _answers(engine)
    engine.add(["delta"], ids=["delta"], embeddings=[np.eye(8, dtype=np.float32)[7:8]])
    engine.close()
    with Engine.load(folder) as again:
        assert len(again) == 4
