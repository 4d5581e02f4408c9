"""index="plaid" through the engine and the local backend: folders, training, rebuild, save."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from colmax import Engine
from colmax.backends.local import LocalBackend
from colmax.errors import IndexFormatError, InvalidInputError
from colmax.store.storage import CODEC_DIR

DIM = 32
OPTIONS = {"train_tokens": 3000, "n_centroids": 64, "kmeans_iters": 3}


def _norm(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def _corpus(n_docs: int, seed: int = 0) -> tuple[list[np.ndarray], list[np.ndarray]]:
    rng = np.random.default_rng(seed)
    words = rng.standard_normal((256, DIM))
    docs = []
    for _ in range(n_docs):
        n = int(rng.integers(8, 30))
        topic = rng.integers(0, 32, size=2)
        w = topic[rng.integers(0, 2, n)] * 8 + rng.integers(0, 8, n)
        docs.append(_norm(words[w] + 0.2 * rng.standard_normal((n, DIM))))
    queries = []
    for _ in range(30):
        d = docs[int(rng.integers(n_docs))]
        pick = d[rng.integers(0, len(d), size=6)]
        queries.append(_norm(pick + 0.2 * rng.standard_normal(pick.shape)))
    return docs, queries


@pytest.fixture(scope="module")
def corpus() -> tuple[list[np.ndarray], list[np.ndarray]]:
    return _corpus(400)


def _ids(n: int, start: int = 0) -> list[str]:
    return [f"d{i}" for i in range(start, start + n)]


def _top(engine: Engine, queries: list[np.ndarray], k: int = 10, **kw: object) -> list[list[str]]:
    hits = engine.search(query_embeddings=queries, k=k, **kw)  # type: ignore[arg-type]
    return [[h.id for h in per_query] for per_query in hits]  # type: ignore[union-attr]


def test_plaid_round_trips_through_a_folder_and_matches_flat(
    corpus: tuple[list[np.ndarray], list[np.ndarray]], tmp_path: Path
) -> None:
    docs, queries = corpus
    flat = Engine(dim=DIM)
    flat.add(embeddings=docs, ids=_ids(len(docs)))
    path = tmp_path / "idx"
    engine = Engine(dim=DIM, index="plaid", path=path, index_options=OPTIONS)
    engine.add(embeddings=docs[:50], ids=_ids(50))  # below train_tokens: exact
    assert engine.info().details["plaid"]["trained"] is False
    small = Engine(dim=DIM)
    small.add(embeddings=docs[:50], ids=_ids(50))
    assert _top(engine, queries[:5], 3) == _top(small, queries[:5], 3)  # exact until trained
    engine.add(embeddings=docs[50:], ids=_ids(len(docs) - 50, 50))  # crosses it: trained
    info = engine.info()
    assert (
        info.index == "plaid" and info.details["plaid"]["trained"] and info.details["segments"] == 1
    )
    before = _top(engine, queries)
    engine.close()
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["index"]["kind"] == "plaid" and manifest["index"]["n_centroids"] == 64
    assert manifest["index"]["drift"]["trained"] is True
    assert len(list((path / CODEC_DIR).glob("*.npy"))) == 6  # one codec
    reopened = Engine(path=path)
    assert _top(reopened, queries) == before
    truth = _top(flat, queries)
    recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(truth, before)])
    assert recall >= 0.8
    # updates after training: coded against the codec, found, deletable
    new_docs, _ = _corpus(3, seed=7)
    reopened.add(embeddings=new_docs, ids=["n0", "n1", "n2"], metadatas=[{"t": 1}] * 3)
    assert _top(reopened, [new_docs[1]], 1) == [["n1"]]
    assert _top(reopened, [new_docs[1]], 3, filter={"t": 1})[0][0] == "n1"
    reopened.delete(["n1", "d0"])
    assert "n1" not in _top(reopened, [new_docs[1]], 50)[0]
    decoded = reopened.backend.get_vectors(["n2"])[0]  # decoded approximations
    assert decoded.shape == new_docs[2].shape and np.abs(decoded - new_docs[2]).mean() < 0.1
    reopened.close()


def test_rebuild_retrains_and_removes_the_old_codec(
    corpus: tuple[list[np.ndarray], list[np.ndarray]], tmp_path: Path
) -> None:
    docs, queries = corpus
    engine = Engine(dim=DIM, index="plaid", path=tmp_path / "idx", index_options=OPTIONS)
    engine.add(embeddings=docs, ids=_ids(len(docs)))
    first = engine.info().details["plaid"]["codec"]
    report = engine.rebuild().details["plaid"]  # what docs/plaid.md documents
    assert report["trained"] and report["codec"] != first
    names = {p.name.split(".")[0] for p in (tmp_path / "idx" / CODEC_DIR).glob("*.npy")}
    assert names == {report["codec"]}
    hits = engine.search(query_embeddings=queries[:3], k=5)
    assert all(len(h) == 5 for h in hits)
    engine.close()
    with pytest.raises(InvalidInputError, match="plaid"):
        Engine(dim=DIM).rebuild()
    with pytest.raises(InvalidInputError, match="plaid"):
        LocalBackend.create(None, _manifest(kind="flat", settings={})).rebuild()


def test_save_copies_codec_and_coded_segments(
    corpus: tuple[list[np.ndarray], list[np.ndarray]], tmp_path: Path
) -> None:
    docs, queries = corpus
    engine = Engine(dim=DIM, index="plaid", index_options=OPTIONS)  # in memory
    engine.add(embeddings=docs, ids=_ids(len(docs)))
    before = _top(engine, queries)
    engine.save(tmp_path / "copy")
    copy = Engine(path=tmp_path / "copy")
    assert copy.info().index == "plaid" and copy.info().details["plaid"]["trained"]
    assert _top(copy, queries) == before
    copy.close()


def _recall(found: list[list[str]], exact: list[list[str]]) -> float:
    return float(np.mean([len(set(f) & set(e)) / len(e) for f, e in zip(found, exact)]))


def test_search_widths_change_the_result_set(
    corpus: tuple[list[np.ndarray], list[np.ndarray]], tmp_path: Path
) -> None:
    docs, queries = corpus
    flat = Engine(dim=DIM)
    flat.add(embeddings=docs, ids=_ids(len(docs)))
    exact = _top(flat, queries)
    engine = Engine(dim=DIM, index="plaid", path=tmp_path / "idx", index_options=OPTIONS)
    engine.add(embeddings=docs, ids=_ids(len(docs)))
    engine.set_search_widths(nprobe=1, ndocs=12, nfinal=10)  # look at almost nothing
    narrow = _top(engine, queries)
    engine.set_search_widths(nprobe=64, ndocs=4096, nfinal=400)  # look at everything
    wide = _top(engine, queries)
    assert narrow != wide  # the widths reach the search
    assert _recall(narrow, exact) < _recall(wide, exact)
    assert _recall(wide, exact) > 0.9
    engine.close()
    # The same widths when opening (index_options), for this process only.
    reopened = Engine(path=tmp_path / "idx", index_options={"nprobe": 1, "ndocs": 12, "nfinal": 10})
    assert _top(reopened, queries) == narrow
    reopened.close()
    assert _top(Engine(path=tmp_path / "idx"), queries) != narrow  # nothing was recorded
    with pytest.raises(InvalidInputError, match="nprobe"):
        Engine(path=tmp_path / "idx", index_options={"nbits": 4})
    with pytest.raises(InvalidInputError, match="search settings"):
        flat.set_search_widths(nprobe=4)


def test_damaged_codec_raises_index_format_error(
    corpus: tuple[list[np.ndarray], list[np.ndarray]], tmp_path: Path
) -> None:
    docs, _ = corpus
    backend = LocalBackend.create(tmp_path / "idx", _manifest())
    backend.upsert(_ids(len(docs)), ["t"] * len(docs), [{}] * len(docs), docs)
    backend.close()
    centroids = next((tmp_path / "idx" / CODEC_DIR).glob("*.centroids.npy"))
    centroids.write_bytes(centroids.read_bytes()[:200])
    with pytest.raises(IndexFormatError, match="centroids"):
        LocalBackend.open(tmp_path / "idx")


def test_bad_plaid_options_fail_before_creating_a_folder(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="nbits"):
        Engine(dim=DIM, index="plaid", path=tmp_path / "x", index_options={"nbits": 9})
    with pytest.raises(InvalidInputError, match="unknown plaid setting"):
        Engine(dim=DIM, index="plaid", path=tmp_path / "x", index_options={"nprobes": 3})
    assert not (tmp_path / "x").exists()


def _t(q: np.ndarray):  # type: ignore[no-untyped-def]
    import torch

    return torch.from_numpy(q)


def _manifest(kind: str = "plaid", settings: dict | None = None):  # type: ignore[no-untyped-def]
    from colmax.store.manifest import Manifest

    return Manifest(
        dim=DIM, index_kind=kind, index_settings=dict(OPTIONS if settings is None else settings)
    )
