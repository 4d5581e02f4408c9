"""Index folders written by earlier colmax versions keep loading (format version 1)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

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
