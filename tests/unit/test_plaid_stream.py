"""Bounded-memory plaid builds: Engine.add_stream, token sources, progress, Ctrl-C."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from colmax import Engine
from colmax.errors import DimensionMismatchError, InvalidEmbeddingError, InvalidInputError
from colmax.indexes.plaid import ArraySource, ListSource, NpyFileSource, stream
from colmax.store.segments import SEGMENT_DIR

DIM = 32
OPTIONS = {"train_tokens": 3000, "n_centroids": 64, "kmeans_iters": 3}


def _norm(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def corpus() -> tuple[list[np.ndarray], list[np.ndarray]]:
    rng = np.random.default_rng(0)
    words = rng.standard_normal((256, DIM))
    docs = []
    for _ in range(400):
        n = int(rng.integers(8, 30))
        w = rng.integers(0, 32, size=2)[rng.integers(0, 2, n)] * 8 + rng.integers(0, 8, n)
        docs.append(_norm(words[w] + 0.2 * rng.standard_normal((n, DIM))))
    queries = [_norm(docs[i][:6] + 0.2 * rng.standard_normal((6, DIM))) for i in range(0, 400, 13)]
    return docs, queries


def _packed(docs: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    offsets = np.zeros(len(docs) + 1, dtype=np.int64)
    np.cumsum([len(d) for d in docs], out=offsets[1:])
    return np.concatenate(docs).astype(np.float16), offsets


def _ids(n: int, start: int = 0) -> list[str]:
    return [f"d{i}" for i in range(start, start + n)]


def _top(engine: Engine, queries: list[np.ndarray], k: int = 10) -> list[list[str]]:
    hits = engine.search(query_embeddings=queries, k=k)
    return [[h.id for h in per] for per in hits]  # type: ignore[union-attr]


def _recall(truth: list[list[str]], got: list[list[str]]) -> float:
    return float(np.mean([len(set(a) & set(b)) / len(a) for a, b in zip(truth, got)]))


def _files(path: Path) -> set[str]:
    return {p.name for p in (path / SEGMENT_DIR).iterdir()}


def test_sources_read_the_same_rows(corpus: tuple, tmp_path: Path) -> None:
    docs, _ = corpus
    tokens, offsets = _packed(docs)
    np.save(tmp_path / "t.npy", tokens)
    sources = [
        ArraySource(tokens, offsets),
        NpyFileSource(tmp_path / "t.npy", offsets),
        ListSource([d.astype(np.float16) for d in docs]),
    ]
    for src in sources:
        assert src.dim == DIM and len(src.lengths) == len(docs)
        np.testing.assert_array_equal(src.read(3, 9), tokens[offsets[3] : offsets[9]])


def test_chunks_cover_every_document_once() -> None:
    lengths = np.array([5, 1, 40, 3, 3, 3])
    runs = list(stream.chunks(lengths, target=8))
    assert runs[0][0] == 0 and runs[-1][1] == 6
    assert all(a < b for a, b in runs) and all(b == c for (_, b), (c, _) in zip(runs, runs[1:]))


def test_add_stream_trains_codes_and_finds(corpus: tuple, tmp_path: Path) -> None:
    docs, queries = corpus
    flat = Engine(dim=DIM)
    flat.add(embeddings=docs, ids=_ids(len(docs)))
    path = tmp_path / "idx"
    engine = Engine(dim=DIM, index="plaid", path=path, index_options=OPTIONS)
    tokens, offsets = _packed(docs[:300])
    engine.add_stream(ArraySource(tokens, offsets), ids=_ids(300), show_progress=False)
    info = engine.info()
    assert (
        info.documents == 300 and info.details["plaid"]["trained"] and info.details["segments"] == 1
    )
    codec = info.details["plaid"]["codec"]
    more = ListSource(docs[300:])  # a codec exists now: coded with it, not retrained
    engine.add_stream(more, ids=_ids(100, 300), metadatas=[{"n": i} for i in range(100)])
    info = engine.info()
    assert info.documents == 400 and info.details["plaid"]["codec"] == codec
    assert engine.get(["d350"])[0].metadata == {"n": 50}
    assert _recall(_top(flat, queries), _top(engine, queries)) >= 0.8  # as engine.add gets
    assert not [f for f in _files(path) if f.startswith(".")]  # no temporary files left
    engine.close()
    assert _top(Engine(path=path), queries) == _top(Engine(path=path), queries)


def test_add_stream_codes_exact_documents_already_there(corpus: tuple, tmp_path: Path) -> None:
    docs, queries = corpus
    engine = Engine(dim=DIM, index="plaid", path=tmp_path / "idx", index_options=OPTIONS)
    engine.add(embeddings=docs[:40], ids=_ids(40))  # below train_tokens: exact
    assert engine.info().details["plaid"]["trained"] is False
    tokens, offsets = _packed(docs[40:])
    engine.add_stream(ArraySource(tokens, offsets), ids=_ids(360, 40))
    info = engine.info()
    assert (
        info.documents == 400 and info.details["plaid"]["trained"] and info.details["segments"] == 1
    )
    hits = engine.search(query_embeddings=docs[5], k=1)
    assert hits[0].id == "d5"  # type: ignore[union-attr]


def test_add_stream_upserts(corpus: tuple, tmp_path: Path) -> None:
    docs, _ = corpus
    engine = Engine(dim=DIM, index="plaid", path=tmp_path / "idx", index_options=OPTIONS)
    engine.add_stream(ListSource(docs[:300]), ids=_ids(300))
    engine.add_stream(ListSource([docs[399]]), ids=["d7"])  # replaces d7's vectors
    assert len(engine) == 300
    hits = engine.search(query_embeddings=docs[399], k=1)
    assert hits[0].id == "d7"  # type: ignore[union-attr]


class _Interrupting(ListSource):
    """Raises KeyboardInterrupt (a user's Ctrl-C) on its ``after``-th read."""

    def __init__(self, vectors: list[np.ndarray], after: int) -> None:
        super().__init__(vectors)
        self.reads, self.after = 0, after

    def read(self, start: int, stop: int) -> np.ndarray:
        self.reads += 1
        if self.reads > self.after:
            raise KeyboardInterrupt
        return super().read(start, stop)


@pytest.mark.parametrize("trained", [False, True], ids=["training", "coding"])
def test_ctrl_c_leaves_the_last_committed_state(
    corpus: tuple, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, trained: bool
) -> None:
    docs, queries = corpus
    monkeypatch.setattr(stream, "CHUNK_TOKENS", 500)  # several chunks per build
    path = tmp_path / "idx"
    engine = Engine(dim=DIM, index="plaid", path=path, index_options=OPTIONS)
    if trained:
        engine.add_stream(ListSource(docs[:300]), ids=_ids(300))
    else:
        engine.add(embeddings=docs[:40], ids=_ids(40))
    before = (engine.info(), _top(engine, queries), _files(path))
    source = _Interrupting(docs[300:] if trained else docs[40:], after=3)
    with pytest.raises(KeyboardInterrupt):
        engine.add_stream(source, ids=_ids(len(source.vectors), 1000))
    assert source.reads > 1  # it was interrupted in the middle, not at the start
    assert (engine.info(), _top(engine, queries), _files(path)) == before
    engine.close()
    reopened = Engine(path=path)
    assert reopened.info().documents == before[0].documents
    assert _top(reopened, queries) == before[1]


def test_progress_bar_shows_tokens_and_eta(
    corpus: tuple, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    docs, _ = corpus
    engine = Engine(dim=DIM, index="plaid", index_options=OPTIONS)
    engine.add_stream(ListSource(docs), show_progress=True)
    err = capsys.readouterr().err
    assert "plaid build: k-means" in err and "plaid build: coding" in err
    assert "100%" in err and "<" in err  # tqdm's "elapsed<remaining"


def test_add_stream_checks_its_input(corpus: tuple) -> None:
    docs, _ = corpus
    flat = Engine(dim=DIM)
    with pytest.raises(InvalidInputError, match="plaid"):
        flat.add_stream(ListSource(docs))
    engine = Engine(dim=DIM, index="plaid", index_options=OPTIONS)
    with pytest.raises(DimensionMismatchError):
        engine.add_stream(ListSource([np.ones((3, DIM + 1), np.float32)]))
    with pytest.raises(InvalidInputError):
        engine.add_stream(ListSource(docs[:3]), ids=["a", "b"])
    bad = [d.copy() for d in docs[:300]]
    bad[150][2] = np.nan
    with pytest.raises(InvalidEmbeddingError, match="NaN"):
        engine.add_stream(ListSource(bad))
    assert len(engine) == 0


def test_drift_advises_a_retrain_and_colmax_info_shows_it(
    corpus: tuple, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from colmax.cli import main

    docs, _ = corpus
    path = tmp_path / "idx"
    engine = Engine(dim=DIM, index="plaid", path=path, index_options=OPTIONS)
    engine.add_stream(ListSource(docs))
    drift = engine.info().details["plaid"]
    assert not drift["rebuild_recommended"] and drift["advice"] == "no re-train needed"
    rng = np.random.default_rng(5)  # documents unlike anything the centroids were trained on
    other = [_norm(rng.standard_normal((20, DIM))) for _ in range(400)]
    engine.add_stream(ListSource(other), ids=_ids(400, 1000))
    drift = engine.info().details["plaid"]
    assert drift["residual_ratio"] > 1.25 and drift["rebuild_recommended"]
    assert drift["advice"].startswith("re-train advised") and "rebuild()" in drift["advice"]
    engine.close()
    capsys.readouterr()
    assert main(["info", str(path)]) == 0
    out = capsys.readouterr().out
    advice = [line for line in out.splitlines() if line.startswith("plaid advice:")]
    assert advice and "re-train advised" in advice[0] and "residual ratio" in out
