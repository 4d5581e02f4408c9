"""A write that fails after its commit point, or a save that fails over an earlier copy, keeps
every file the database names.

Ctrl-C during SQLite's COMMIT (its fsync is the slowest part of a write) is raised when
COMMIT returns: the write is durable, but the failure handler removed the new segment, and
the folder no longer opened ("segment file is missing"). A failed ``save`` over a folder an
engine had saved to before removed that folder's committed codec (the same name).
"""

from __future__ import annotations

import errno
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from colmax import Engine
from colmax.errors import DiskFullError
from colmax.indexes.plaid.segment import CodedSegment

DIM = 8


def _vectors(n: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        x = rng.standard_normal((int(rng.integers(3, 8)), DIM)).astype(np.float32)
        out.append(x / np.linalg.norm(x, axis=1, keepdims=True))
    return out


class _InterruptAfterCommit:
    """The SQLite connection, with Ctrl-C raised as COMMIT returns (what Python does with a
    SIGINT that arrived during the C call)."""

    def __init__(self, conn: Any) -> None:
        self._conn = conn

    def execute(self, sql: str, *args: Any) -> Any:
        out = self._conn.execute(sql, *args)
        if sql == "COMMIT":
            raise KeyboardInterrupt
        return out

    def __getattr__(self, name: str) -> Any:
        return getattr(self._conn, name)


@pytest.mark.parametrize("index", ["flat", "plaid"])
def test_ctrl_c_as_commit_returns_keeps_the_committed_write(tmp_path: Path, index: str) -> None:
    options = {"train_tokens": 50, "n_centroids": 8} if index == "plaid" else None
    engine = Engine(dim=DIM, path=tmp_path / "idx", index=index, index_options=options)
    engine.add(embeddings=_vectors(20, 0), ids=[f"a{i}" for i in range(20)])
    docs = engine.backend._storage.docs
    real = docs._conn
    docs._conn = _InterruptAfterCommit(real)
    try:
        with pytest.raises(KeyboardInterrupt):
            engine.add(embeddings=_vectors(3, 1), ids=["b0", "b1", "b2"])
    finally:
        docs._conn = real
    engine.close()
    with Engine(path=tmp_path / "idx") as reopened:  # raised IndexFormatError before
        assert sorted(reopened.ids()) == sorted([f"a{i}" for i in range(20)] + ["b0", "b1", "b2"])
        query = _vectors(1, 1)[0]
        assert reopened.search(query_embeddings=query, k=1)[0].id == "b0"


def test_failed_save_over_an_earlier_copy_keeps_its_codec(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    options = {"train_tokens": 200, "n_centroids": 16, "kmeans_iters": 2}
    source = Engine(dim=DIM, index="plaid", path=tmp_path / "a", index_options=options)
    source.add(embeddings=_vectors(60, 2), ids=[f"d{i}" for i in range(60)])
    source.save(tmp_path / "b")  # b adopts a's codec, under its name
    source.add(embeddings=_vectors(5, 3), ids=[f"n{i}" for i in range(5)])

    def full_disk(self: CodedSegment, folder: Path) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(CodedSegment, "write", full_disk)
    with pytest.raises(DiskFullError):
        source.save(tmp_path / "b")
    monkeypatch.undo()
    with Engine(path=tmp_path / "b") as copy:  # its codec files were removed before
        assert len(copy) == 60
        assert copy.search(query_embeddings=_vectors(1, 2)[0], k=1)[0].id == "d0"
