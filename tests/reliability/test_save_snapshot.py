"""``save`` copies the folder's current documents, even when another process (here a second
engine on the same folder) committed since this one last looked, or commits while the copy
reads its rows. Before, an updated document was in neither version in the copy: its old key
was gone from the database and its new key not in this engine's snapshot."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from colmax import Engine

V = np.eye(4, dtype=np.float32)[:2]


@pytest.fixture
def pair(tmp_path: Path) -> tuple[Engine, Engine]:
    first = Engine(dim=4, path=tmp_path / "idx")
    first.add(embeddings=[V, V, V], ids=["x", "y", "z"], metadatas=[{"n": 1}] * 3)
    return first, Engine(path=tmp_path / "idx")  # the other process, in real life


def _saved(path: Path) -> dict[str, Any]:
    with Engine(path=path) as copy:
        return {d.id: d.metadata["n"] for d in copy.get(copy.ids())}


def test_save_picks_up_another_writers_commits(pair: tuple[Engine, Engine], tmp_path: Path) -> None:
    first, other = pair
    other.add(embeddings=[V], ids=["x"], metadatas=[{"n": 2}])  # an update of x
    first.save(tmp_path / "copy")
    assert _saved(tmp_path / "copy") == {"x": 2, "y": 1, "z": 1}


def test_save_reads_again_when_a_commit_lands_during_the_copy(
    pair: tuple[Engine, Engine], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first, other = pair
    docs = first.backend._storage.docs
    real_fetch = docs.fetch
    landed: list[bool] = []

    def fetch_after_a_commit(keys: Any) -> Any:
        if not landed:  # the other process commits between the snapshot and the rows
            landed.append(True)
            other.add(embeddings=[V], ids=["y"], metadatas=[{"n": 3}])
        return real_fetch(keys)

    monkeypatch.setattr(docs, "fetch", fetch_after_a_commit)
    first.save(tmp_path / "copy")
    assert _saved(tmp_path / "copy") == {"x": 1, "y": 3, "z": 1}


def test_saving_into_an_index_gives_the_copies_fresh_keys(tmp_path: Path) -> None:
    # The source's keys were reused in the target, where they named other documents: a
    # reader whose snapshot predated the save returned one document's id with another's
    # score. Keys are never reused; the stale reader drops rows it does not know.
    e1, e2 = np.eye(4, dtype=np.float32)[:1], np.eye(4, dtype=np.float32)[1:2]
    target = Engine(dim=4, path=tmp_path / "target")
    target.add(embeddings=[e1], ids=["target-doc"])
    reader = Engine(path=tmp_path / "target")  # another process, in real life
    source = Engine(dim=4)
    source.add(embeddings=[e2], ids=["source-doc"])
    refresh = reader.backend._refresh_if_stale

    def refresh_then_the_save_commits() -> None:
        refresh()
        source.save(tmp_path / "target")

    reader.backend._refresh_if_stale = refresh_then_the_save_commits  # type: ignore[method-assign]
    assert [h.id for h in reader.search(query_embeddings=e1, k=1)] in ([], ["target-doc"])
    reader.backend._refresh_if_stale = refresh  # type: ignore[method-assign]
    assert [h.id for h in reader.search(query_embeddings=e2, k=1)] == ["source-doc"]
    with Engine(path=tmp_path / "target") as saved:
        assert saved.ids() == ["source-doc"]
        assert saved.backend._storage.docs.all_keys().tolist() == [1]  # key 0 was target-doc's
