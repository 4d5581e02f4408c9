"""QdrantBackend on qdrant-edge and on qdrant-client's in-memory local mode.

Small random unit vectors; every search is checked against brute-force MaxSim in numpy.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("qdrant_edge")
pytest.importorskip("qdrant_client")

from colmax.backends.qdrant import QdrantBackend, point_id
from colmax.errors import (
    IndexFormatError,
    IndexLockedError,
    InvalidInputError,
    UnknownIdError,
)
from colmax.store.manifest import Manifest

DIM = 16
N = 40
MODES = ["edge", "memory"]


def _create(path, dim, encoder_config=None, **options):  # type: ignore[no-untyped-def]
    """``QdrantBackend.create`` with the registry's (folder, manifest, options) signature."""
    from colmax.backends.base import BackendOptions
    from colmax.store.manifest import Manifest

    manifest = Manifest(dim=dim, index_kind="qdrant", encoder=encoder_config)
    return QdrantBackend.create(path, manifest, BackendOptions(options))


def _open(path, manifest, **options):  # type: ignore[no-untyped-def]
    from colmax.backends.base import BackendOptions

    return QdrantBackend.open(path, manifest, BackendOptions(options))


def unit(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.normal(size=(n, DIM))
    # Rounded to float16 first, as the flat index stores them, so the comparisons below
    # test Qdrant's scoring, not the storage precision.
    v = (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float16).astype(np.float32)
    return v


@pytest.fixture(scope="module")
def corpus() -> tuple[list[str], list[np.ndarray], list[dict]]:
    rng = np.random.default_rng(0)
    ids = [f"doc-{i}" for i in range(N)]
    vecs = [unit(rng, int(rng.integers(1, 12))) for _ in range(N)]
    metas = [{"i": i, "even": i % 2 == 0, "tag": ["x", "y", "z"][i % 3]} for i in range(N)]
    return ids, vecs, metas


def make(mode: str, tmp_path: Path, **options: object) -> QdrantBackend:
    path = None if mode == "memory" else tmp_path / "index"
    if mode != "memory":
        options = {"mode": mode, **options}
    return _create(path, DIM, encoder_config={"model": "m"}, **options)


@pytest.fixture(params=MODES)
def filled(
    request: pytest.FixtureRequest, tmp_path: Path, corpus: tuple
) -> Iterator[QdrantBackend]:
    ids, vecs, metas = corpus
    backend = make(request.param, tmp_path)
    backend.upsert(ids, [f"text {i}" for i in ids], metas, vecs)
    yield backend
    backend.close()


def brute(q: np.ndarray, ids: list[str], vecs: list[np.ndarray], keep=None) -> list[tuple]:
    scored = [
        (float((q @ v.T).max(axis=1).sum()), i)
        for i, v in zip(ids, vecs)
        if keep is None or keep(i)
    ]
    return sorted(scored, key=lambda t: -t[0])


def test_search_equals_brute_force(filled: QdrantBackend, corpus: tuple) -> None:
    ids, vecs, _ = corpus
    rng = np.random.default_rng(1)
    queries = [unit(rng, n) for n in (1, 4, 9)]
    results = filled.search([torch.from_numpy(q) for q in queries], k=7)
    for q, hits in zip(queries, results):
        ref = brute(q, ids, vecs)[:7]
        assert [h.id for h in hits] == [i for _, i in ref]
        np.testing.assert_allclose([h.score for h in hits], [s for s, _ in ref], atol=1e-4)
        assert [h.rank for h in hits] == list(range(7))
        assert hits[0].text == f"text {hits[0].id}"
        assert hits[0].metadata["i"] == int(hits[0].id.split("-")[1])


def test_k_larger_than_corpus_and_filters(filled: QdrantBackend, corpus: tuple) -> None:
    ids, vecs, metas = corpus
    q = unit(np.random.default_rng(2), 3)
    hits = filled.search([torch.from_numpy(q)], k=1000, filter={"even": True, "tag": "x"})[0]
    keep = {i for i, m in zip(ids, metas) if m["even"] and m["tag"] == "x"}
    assert [h.id for h in hits] == [i for _, i in brute(q, ids, vecs, keep.__contains__)]
    assert filled.search([torch.from_numpy(q)], k=3, filter={"tag": {"$in": []}}) == [[]]


def test_upsert_replaces_and_ids_keep_insertion_order(filled: QdrantBackend) -> None:
    before = filled.ids()
    assert before == [f"doc-{i}" for i in range(N)]
    new = np.eye(DIM, dtype=np.float32)[:2]
    filled.upsert(["doc-3"], ["replaced"], [{"i": -1}], [new])
    assert len(filled) == N
    assert filled.get(["doc-3"])[0].text == "replaced"
    np.testing.assert_array_equal(filled.get_vectors(["doc-3"])[0], new)
    assert filled.ids()[-1] == "doc-3"  # a replaced document counts as the newest
    hits = filled.search([torch.eye(DIM)[:2]], k=1)[0]
    assert hits[0].id == "doc-3" and abs(hits[0].score - 2.0) < 1e-3


def test_get_delete_and_unknown_ids(filled: QdrantBackend, corpus: tuple) -> None:
    ids, vecs, metas = corpus
    docs = filled.get(["doc-5", "doc-1"])
    assert [d.id for d in docs] == ["doc-5", "doc-1"]
    assert docs[0].metadata == metas[5]
    got = filled.get_with_vectors(["doc-7"])
    np.testing.assert_array_equal(got[0][1], vecs[7])
    assert "doc-7" in filled and "nope" not in filled and 7 not in filled
    assert filled.existing(["doc-1", "nope"]) == {"doc-1"}
    with pytest.raises(UnknownIdError, match="nope"):
        filled.get(["doc-1", "nope"])
    with pytest.raises(UnknownIdError, match="nothing was changed"):
        filled.delete(["doc-1", "nope"])
    assert len(filled) == N and "doc-1" in filled  # no partial delete
    assert filled.delete(["doc-1", "doc-2"]) == 2
    assert len(filled) == N - 2 and "doc-1" not in filled
    hits = filled.search([torch.from_numpy(vecs[1])], k=N)[0]
    assert "doc-1" not in {h.id for h in hits} and len(hits) == N - 2


def test_point_ids_are_uuid5_with_the_id_in_the_payload(filled: QdrantBackend) -> None:
    driver = filled._live()
    found = driver.retrieve([point_id("doc-4")], ["colmax_id", "text"])
    assert found == {point_id("doc-4"): found[point_id("doc-4")]}
    assert found[point_id("doc-4")].payload == {"colmax_id": "doc-4", "text": "text doc-4"}


def test_info(filled: QdrantBackend) -> None:
    info = filled.info()
    assert info.documents == N and info.dim == DIM and info.index == "qdrant"
    assert info.details["mode"] in MODES


def test_reopen_folder(tmp_path: Path, corpus: tuple) -> None:
    mode = "edge"
    ids, vecs, metas = corpus
    backend = make(mode, tmp_path)
    backend.upsert(ids, ids, metas, vecs)
    q = [torch.from_numpy(vecs[0])]
    before = backend.search(q, k=5, filter={"even": False})
    backend.close()
    manifest = Manifest.read(tmp_path / "index")
    assert manifest.index_kind == "qdrant" and manifest.encoder == {"model": "m"}
    assert manifest.index_settings["mode"] == mode
    reopened = _open(tmp_path / "index", manifest)
    try:
        assert reopened.search(q, k=5, filter={"even": False}) == before
        assert reopened.ids() == ids and reopened.encoder_config == {"model": "m"}
    finally:
        reopened.close()


def test_edge_folder_is_locked_while_open(tmp_path: Path) -> None:
    backend = make("edge", tmp_path)
    try:
        with pytest.raises(IndexLockedError):
            _open(tmp_path / "index", Manifest.read(tmp_path / "index"))
        # Another process is refused too (the shard's WAL lock is an OS file lock); without
        # colmax in the child, so that the check takes a fraction of a second.
        code = "import sys, qdrant_edge; qdrant_edge.EdgeShard.load(sys.argv[1])"
        shard = str(tmp_path / "index" / "qdrant")
        run = subprocess.run([sys.executable, "-c", code, shard], capture_output=True, text=True)
        assert run.returncode != 0 and "WouldBlock" in run.stderr
    finally:
        backend.close()


@pytest.mark.parametrize("mode", MODES)
def test_save_copies_into_an_edge_folder(mode: str, tmp_path: Path, corpus: tuple) -> None:
    ids, vecs, metas = corpus
    backend = make(mode, tmp_path)
    backend.upsert(ids, ids, metas, vecs)
    backend.delete(["doc-0"])
    q = [torch.from_numpy(vecs[3])]
    before = backend.search(q, k=6, filter={"tag": {"$ne": "y"}})
    target = backend.save(tmp_path / "copy")
    backend.close()
    copy = _open(target, Manifest.read(target))
    try:
        assert copy.settings.mode == "edge"
        assert copy.ids() == ids[1:]
        assert [h.id for h in copy.search(q, k=6, filter={"tag": {"$ne": "y"}})[0]] == [
            h.id for h in before[0]
        ]
    finally:
        copy.close()
    with pytest.raises(IndexFormatError, match="not an empty folder"):
        make("memory", tmp_path).save(target)


def test_create_refuses_a_non_empty_folder_and_bad_options(tmp_path: Path) -> None:
    (tmp_path / "index").mkdir()
    (tmp_path / "index" / "x.txt").write_text("mine")
    with pytest.raises(IndexFormatError, match="not an empty folder"):
        make("edge", tmp_path)
    assert (tmp_path / "index" / "x.txt").read_text() == "mine"
    with pytest.raises(InvalidInputError, match="unknown qdrant option"):
        make("memory", tmp_path, shards=3)
    with pytest.raises(InvalidInputError, match="need a server"):
        make("memory", tmp_path, shard_number=3)
    with pytest.raises(InvalidInputError, match="muvera"):
        make("memory", tmp_path, prefetch="muvera", pooling={"k_sim": 99})
    with pytest.raises(InvalidInputError, match="keeps the index in a folder"):
        _create(None, DIM, encoder_config=None, mode="edge")
    with pytest.raises(InvalidInputError, match="mode must be one of"):
        _create(tmp_path / "l", DIM, encoder_config=None, mode="local")


def test_manifest_never_holds_the_api_key(tmp_path: Path) -> None:
    backend = make("edge", tmp_path)
    backend.close()
    raw = json.loads((tmp_path / "index" / "manifest.json").read_text())
    assert "api_key" not in json.dumps(raw)
    assert raw["index"]["kind"] == "qdrant" and raw["dim"] == DIM


def test_open_rejects_damaged_settings(tmp_path: Path) -> None:
    backend = make("edge", tmp_path)
    backend.close()
    manifest = Manifest.read(tmp_path / "index")
    manifest.index_settings["datatype"] = "int4"
    with pytest.raises(IndexFormatError, match="datatype"):
        _open(tmp_path / "index", manifest)
    manifest.index_settings["datatype"] = "float16"
    manifest.index_settings["mystery"] = 1
    with pytest.raises(IndexFormatError, match="mystery"):
        _open(tmp_path / "index", manifest)


@pytest.mark.parametrize("mode", ["edge", "memory"])
@pytest.mark.parametrize("pooling", ["mean", "muvera"])
def test_two_stage_search(mode: str, pooling: str, tmp_path: Path, corpus: tuple) -> None:
    ids, vecs, metas = corpus
    rng = np.random.default_rng(3)
    queries = [unit(rng, 5) for _ in range(10)]
    # prefetch_limit >= corpus: the rerank sees everything, so the result is exact.
    whole = make(mode, tmp_path, prefetch=pooling, prefetch_limit=N)
    whole.upsert(ids, ids, metas, vecs)
    for q, hits in zip(queries, whole.search([torch.from_numpy(q) for q in queries], k=5)):
        assert [h.id for h in hits] == [i for _, i in brute(q, ids, vecs)[:5]]
    # a small prefetch: scores stay exact MaxSim, the candidates are approximate.
    whole.close()
    small = make(mode, tmp_path / "small", prefetch=pooling, prefetch_limit=10)
    small.upsert(ids, ids, metas, vecs)
    found = 0
    for q, hits in zip(queries, small.search([torch.from_numpy(q) for q in queries], k=5)):
        exact = dict((i, s) for s, i in brute(q, ids, vecs))
        for h in hits:
            assert abs(h.score - exact[h.id]) < 1e-4
        found += len({h.id for h in hits} & {i for _, i in brute(q, ids, vecs)[:5]})
    assert found >= 0.4 * 50  # random vectors: far above the 10/40 chance level of ~12
    filtered = small.search([torch.from_numpy(queries[0])], k=50, filter={"even": True})[0]
    assert filtered and all(h.metadata["even"] for h in filtered)
    small.close()


def test_concurrent_searches_during_writes(tmp_path: Path, corpus: tuple) -> None:
    ids, vecs, metas = corpus
    backend = make("edge", tmp_path)
    backend.upsert(ids, ids, metas, vecs)
    errors: list[BaseException] = []
    q = [torch.from_numpy(vecs[0])]

    def reader() -> None:
        try:
            for _ in range(20):
                hits = backend.search(q, k=3)[0]
                if hits[0].id != "doc-0":
                    raise AssertionError(hits[0].id)
        except BaseException as exc:  # collected for the main thread
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(3)]
    for t in threads:
        t.start()
    for j in range(5):
        backend.upsert([f"new-{j}"], ["n"], [{}], [vecs[5]])
    for t in threads:
        t.join()
    backend.close()
    assert not errors


def test_closed_backend_refuses_use(tmp_path: Path) -> None:
    backend = make("memory", tmp_path)
    backend.close()
    backend.close()  # idempotent
    with pytest.raises(InvalidInputError, match="closed"):
        len(backend)


def test_open_accepts_the_recorded_options_only(tmp_path: Path) -> None:
    make("edge", tmp_path, collection="docs", prefetch="mean").close()
    manifest = Manifest.read(tmp_path / "index")
    again = _open(tmp_path / "index", manifest, collection="docs", prefetch="mean")
    again.close()
    with pytest.raises(InvalidInputError, match="created with prefetch='mean'"):
        _open(tmp_path / "index", manifest, prefetch="muvera")
    with pytest.raises(InvalidInputError, match="fixed at creation"):
        _open(tmp_path / "index", manifest, shards=2)
