"""colmax.compat: reading RAGatouille / colbert-ai PLAID folders written here in their format.

The writer below follows colbert-ai's on-disk layout (see ``colmax.compat.colbert_plaid``);
``tests/peers/test_ragatouille_import.py`` checks the reader against folders that colbert-ai
and RAGatouille themselves wrote.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from colmax import Engine
from colmax.compat import (
    decode_vectors,
    import_ragatouille_index,
    read_plaid_index,
    read_ragatouille_index,
)
from colmax.errors import EncoderMismatchError, IndexFormatError, ModelLoadError

DIM = 16  # the tiny colbert model's projection


def _encode(vectors: np.ndarray, centroids: np.ndarray, cutoffs: np.ndarray, nbits: int):
    codes = (vectors @ centroids.T).argmax(axis=1)
    buckets = np.searchsorted(cutoffs, vectors - centroids[codes], side="right")
    bits = (buckets[..., None] >> np.arange(nbits)) & 1  # LSB first, as colbert-ai writes
    packed = np.packbits(bits.reshape(len(vectors), DIM * nbits).astype(np.uint8), axis=1)
    return codes, packed, buckets


def write_ragatouille(
    folder: Path,
    passages: list[np.ndarray],
    texts: list[str],
    doc_ids: list[str],
    *,
    nbits: int = 2,
    checkpoint: str | None = None,
    metadata: dict[str, Any] | None = None,
    chunk_sizes: tuple[int, ...] | None = None,
) -> list[np.ndarray]:
    """A PLAID + RAGatouille folder holding ``passages`` (one ``(n, DIM)`` array each).

    Returns what decoding must give: ``normalize(centroid + bucket weights)`` per passage,
    computed from the bucket indices before they were bit-packed.
    """
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    centroids = rng.normal(size=(8, DIM)).astype(np.float32)
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True)
    centroids = centroids.astype(np.float16).astype(np.float32)  # stored as float16
    n_buckets = 2**nbits
    weights = np.linspace(-0.3, 0.3, n_buckets).astype(np.float32)
    cutoffs = ((weights[1:] + weights[:-1]) / 2).astype(np.float32)
    torch.save(torch.from_numpy(centroids).half(), folder / "centroids.pt")
    torch.save((torch.from_numpy(cutoffs), torch.from_numpy(weights)), folder / "buckets.pt")
    torch.save(torch.tensor([0.1]), folder / "avg_residual.pt")
    sizes = chunk_sizes or (len(passages),)
    offset = 0
    expected: list[np.ndarray] = []
    for i, size in enumerate(sizes):
        part = passages[offset : offset + size]
        flat = np.concatenate(part) if part else np.zeros((0, DIM), np.float32)
        codes, packed, buckets = _encode(flat, centroids, cutoffs, nbits)
        approx = centroids[codes] + weights[buckets]
        approx /= np.linalg.norm(approx, axis=1, keepdims=True)
        if part:
            expected += np.split(approx, np.cumsum([len(p) for p in part])[:-1])
        torch.save(torch.from_numpy(codes.astype(np.int32)), folder / f"{i}.codes.pt")
        torch.save(torch.from_numpy(packed), folder / f"{i}.residuals.pt")
        (folder / f"doclens.{i}.json").write_text(json.dumps([len(p) for p in part]))
        chunk_meta = {"passage_offset": offset, "num_passages": size, "num_embeddings": len(flat)}
        (folder / f"{i}.metadata.json").write_text(json.dumps(chunk_meta))
        offset += size
    config = {"dim": DIM, "nbits": nbits, "checkpoint": checkpoint, "query_maxlen": 32}
    config["doc_maxlen"] = 64
    meta = {"config": config, "num_chunks": len(sizes), "num_partitions": 8}
    (folder / "metadata.json").write_text(json.dumps(meta))
    (folder / "collection.json").write_text(json.dumps(texts))
    (folder / "pid_docid_map.json").write_text(json.dumps(dict(enumerate(doc_ids))))
    if metadata is not None:
        (folder / "docid_metadata_map.json").write_text(json.dumps(metadata))
    return expected


def _unit(rows: int, seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(rows, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


TEXTS = ["alpha beta", "gamma delta", "epsilon part one", "epsilon part two", "zeta"]
DOC_IDS = ["a", "b", "e", "e", "z"]
META = {"a": {"year": 2020}, "b": None, "e": {"year": 2024, "tags": ["x"]}}


@pytest.fixture
def passages() -> list[np.ndarray]:
    return [_unit(n, seed) for seed, n in enumerate((3, 5, 4, 2, 6))]


@pytest.fixture
def rag_index(tmp_path: Path, passages: list[np.ndarray], tiny_colbert_model: Path) -> Path:
    folder = tmp_path / "ragatouille" / "colbert" / "indexes" / "demo"
    write_ragatouille(
        folder,
        passages,
        TEXTS,
        DOC_IDS,
        checkpoint=str(tiny_colbert_model),
        metadata=META,
        chunk_sizes=(2, 3),
    )
    return folder


@pytest.mark.parametrize("nbits", [1, 2, 4, 8])
def test_decode_matches_the_quantised_vectors(
    tmp_path: Path, passages: list[np.ndarray], nbits: int
) -> None:
    expected = write_ragatouille(
        tmp_path / "ix", passages, TEXTS, DOC_IDS, nbits=nbits, chunk_sizes=(2, 0, 3)
    )
    plaid = read_plaid_index(tmp_path / "ix")
    assert (plaid.dim, plaid.nbits, plaid.num_passages) == (DIM, nbits, 5)
    got = [(first, v) for first, batch in plaid.iter_vectors(batch=2) for v in batch]
    assert [first for first, _ in got] == [0, 0, 2, 2, 4]
    for want, (_, have) in zip(expected, got, strict=True):
        np.testing.assert_allclose(have, want, atol=1e-6)
    # Residual coding keeps the direction roughly (more bits: closer).
    cosine = np.concatenate([np.sum(p * w, axis=1) for p, w in zip(passages, expected)])
    assert cosine.mean() > {1: 0.5, 2: 0.6, 4: 0.6, 8: 0.6}[nbits]


def test_decode_vectors_bit_order() -> None:
    # dim 4, nbits 2: bucket indices 1, 2, 3, 0 -> bits (LSB first) 10 01 11 00.
    packed = np.packbits(np.array([[1, 0, 0, 1, 1, 1, 0, 0]], dtype=np.uint8), axis=1)
    weights = np.array([0.0, 1.0, 2.0, 3.0], dtype=np.float32)
    out = decode_vectors(np.array([0]), packed, np.zeros((1, 4), np.float32), weights, nbits=2)
    np.testing.assert_allclose(out[0], np.array([1.0, 2.0, 3.0, 0.0]) / np.sqrt(14), rtol=1e-6)


def test_passages_keep_ids_texts_metadata(rag_index: Path) -> None:
    _, passages = read_ragatouille_index(rag_index)
    assert [p.id for p in passages] == ["a", "b", "e#0", "e#1", "z"]
    assert [p.text for p in passages] == TEXTS
    assert passages[0].metadata == {"year": 2020}
    assert passages[1].metadata == {} and passages[4].metadata == {}
    assert passages[3].metadata == {"year": 2024, "tags": ["x"], "parent_id": "e", "chunk_index": 1}


def test_import_builds_a_searchable_index(
    rag_index: Path, passages: list[np.ndarray], tmp_path: Path, tiny_colbert_model: Path
) -> None:
    engine = import_ragatouille_index(rag_index, tmp_path / "colmax-index")
    assert sorted(engine.ids()) == ["a", "b", "e#0", "e#1", "z"]
    assert engine.get(["e#1"])[0].metadata["parent_id"] == "e"
    # The recorded checkpoint and lengths became the encoder: text queries work.
    config = engine.info().encoder
    assert config["model_name_or_path"] == str(tiny_colbert_model)
    assert config["document_length"] == 64 and config["query_length"] == 32
    assert len(engine.search("gamma delta", k=3)) == 3
    # Searching with a passage's own decoded vectors finds that passage first.
    plaid = read_plaid_index(rag_index)
    decoded = [v for _, batch in plaid.iter_vectors() for v in batch]
    hits = engine.search(query_embeddings=decoded[1], k=1)
    assert hits[0].id == "b"
    # Each stored vector equals its query twin: MaxSim is the token count (float16 storage).
    assert hits[0].score == pytest.approx(len(decoded[1]), abs=5e-3)
    engine.close()
    with Engine.load(tmp_path / "colmax-index") as reopened:
        assert len(reopened) == 5
        assert reopened.get(["a"])[0].text == "alpha beta"


def test_deleted_passages_are_left_out(
    tmp_path: Path, passages: list[np.ndarray], tiny_colbert_model: Path
) -> None:
    # After RAGatouille's delete_from_index("b"): doclen 0 in the chunk, pid 1 unmapped,
    # and collection.json compacted to the surviving texts.
    folder = tmp_path / "deleted"
    kept = [p if i != 1 else p[:0] for i, p in enumerate(passages)]
    write_ragatouille(folder, kept, TEXTS, DOC_IDS, checkpoint=str(tiny_colbert_model))
    pid_map = {str(i): d for i, d in enumerate(DOC_IDS) if i != 1}
    (folder / "pid_docid_map.json").write_text(json.dumps(pid_map))
    (folder / "collection.json").write_text(json.dumps([t for i, t in enumerate(TEXTS) if i != 1]))
    _, got = read_ragatouille_index(folder)
    assert [(p.pid, p.id, p.text) for p in got] == [
        (0, "a", "alpha beta"),
        (2, "e#0", "epsilon part one"),
        (3, "e#1", "epsilon part two"),
        (4, "z", "zeta"),
    ]


def test_dimension_mismatch_and_missing_checkpoint(
    rag_index: Path, tmp_path: Path, tiny_hf_model: Path
) -> None:
    with pytest.raises(EncoderMismatchError, match="dimension 16"):
        import_ragatouille_index(rag_index, tmp_path / "x", model=tiny_hf_model)  # dim 32
    meta = json.loads((rag_index / "metadata.json").read_text())
    meta["config"]["checkpoint"] = str(tmp_path / "moved-away")
    (rag_index / "metadata.json").write_text(json.dumps(meta))
    with pytest.raises(ModelLoadError, match="pass model="):
        import_ragatouille_index(rag_index, tmp_path / "y")
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()


def test_settings_with_a_loaded_encoder_are_refused_not_dropped(
    rag_index: Path, tmp_path: Path, tiny_colbert_model: Path
) -> None:
    # query_length=64 (and device=) beside a loaded encoder were silently ignored.
    from colmax.encoders import load_encoder
    from colmax.errors import InvalidInputError

    encoder = load_encoder(tiny_colbert_model, device="cpu")
    with pytest.raises(InvalidInputError, match="query_length go with a model name"):
        import_ragatouille_index(rag_index, tmp_path / "x", model=encoder, query_length=64)
    with pytest.raises(InvalidInputError, match="device go with a model name"):
        import_ragatouille_index(rag_index, tmp_path / "y", model=encoder, device="cpu")
    assert not (tmp_path / "x").exists() and not (tmp_path / "y").exists()
    engine = import_ragatouille_index(rag_index, tmp_path / "z", model=encoder)
    assert engine.encoder is encoder and len(engine) == 5
    engine.close()


def test_refuses_a_non_empty_destination(rag_index: Path, tmp_path: Path) -> None:
    target = tmp_path / "busy"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    with pytest.raises(IndexFormatError, match="not an empty folder"):
        import_ragatouille_index(rag_index, target)
    assert [p.name for p in target.iterdir()] == ["keep.txt"]


class NotATensor:
    """Pickled by the test below: weights_only loading must refuse it."""


def _damage_pickle(folder: Path) -> None:
    torch.save({"payload": NotATensor()}, folder / "centroids.pt")


def _damage_bytes(folder: Path) -> None:
    (folder / "1.residuals.pt").write_bytes(b"not a zip file at all")


def _damage_shape(folder: Path) -> None:
    torch.save(torch.zeros(3, dtype=torch.int32), folder / "0.codes.pt")


def _damage_json(folder: Path) -> None:
    (folder / "pid_docid_map.json").write_text("{not json")


def _damage_missing(folder: Path) -> None:
    (folder / "buckets.pt").unlink()


def _damage_pid(folder: Path) -> None:
    (folder / "pid_docid_map.json").write_text(json.dumps({"0": "a", "99": "b"}))


def _damage_collection(folder: Path) -> None:
    (folder / "collection.json").write_text(json.dumps(["only one"]))


def _damage_codes_range(folder: Path) -> None:
    torch.save(torch.full((8,), 500, dtype=torch.int32), folder / "0.codes.pt")


def _damage_nbits(folder: Path) -> None:
    meta = json.loads((folder / "metadata.json").read_text())
    meta["config"]["nbits"] = 3
    (folder / "metadata.json").write_text(json.dumps(meta))


@pytest.mark.parametrize(
    ("damage", "file"),
    [
        (_damage_pickle, "centroids.pt"),
        (_damage_bytes, "1.residuals.pt"),
        (_damage_shape, "0.codes.pt"),
        (_damage_json, "pid_docid_map.json"),
        (_damage_missing, "buckets.pt"),
        (_damage_pid, "pid_docid_map.json"),
        (_damage_collection, "collection.json"),
        (_damage_codes_range, "0.codes.pt"),
        (_damage_nbits, "metadata.json"),
    ],
    ids=[
        "pickled-object",
        "garbage-bytes",
        "wrong-shape",
        "bad-json",
        "missing-file",
        "pid-out-of-range",
        "collection-length",
        "code-out-of-range",
        "nbits",
    ],
)
def test_damaged_folders_raise_index_format_error(
    rag_index: Path, tmp_path: Path, damage: Any, file: str
) -> None:
    damage(rag_index)
    target = tmp_path / "out"
    with pytest.raises(IndexFormatError, match=file.replace(".", r"\.")):
        import_ragatouille_index(rag_index, target)
    assert not target.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out")]  # no staging left


def test_foreign_folders(tmp_path: Path) -> None:
    with pytest.raises(IndexFormatError, match="no such index folder"):
        read_plaid_index(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(IndexFormatError, match="metadata.json is missing"):
        read_plaid_index(tmp_path / "empty")
    (tmp_path / "colmax-like").mkdir()
    (tmp_path / "colmax-like" / "metadata.json").write_text(json.dumps({"format": "x"}))
    with pytest.raises(IndexFormatError, match="no 'config'"):
        read_plaid_index(tmp_path / "colmax-like")


def test_cleanup_when_the_copy_fails_midway(rag_index: Path, tmp_path: Path) -> None:
    # Chunk 0 is fine, chunk 1 is damaged: the import fails after writing chunk 0.
    _damage_bytes(rag_index)
    shutil.copytree(rag_index, tmp_path / "copy")
    with pytest.raises(IndexFormatError):
        import_ragatouille_index(tmp_path / "copy", tmp_path / "half")
    assert not (tmp_path / "half").exists()


DOC = Path(__file__).resolve().parents[2] / "docs" / "migration-ragatouille.md"


def test_migration_doc_snippets_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny_colbert_model: Path
) -> None:
    """Every ``python`` block of docs/migration-ragatouille.md, in order, as one script."""
    pytest.importorskip("langchain_colmax")
    text = DOC.read_text(encoding="utf-8")
    blocks = [b.split("```", 1)[0] for b in text.split("```python\n")[1:]]
    assert len(blocks) >= 10
    source = "\n".join(blocks)
    rag_folder = tmp_path / ".ragatouille" / "colbert" / "indexes" / "my_index"
    write_ragatouille(
        rag_folder,
        [_unit(n, seed) for seed, n in enumerate((3, 5, 4))],
        ["one", "two", "three"],
        ["a", "b", "c"],
        checkpoint=str(tiny_colbert_model),
    )
    source = source.replace('"colbert-ir/colbertv2.0"', repr(str(tiny_colbert_model)))
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, Any] = {}
    exec(compile(source, str(DOC), "exec"), namespace)
    assert [h.id for h in namespace["french"]] and all(
        h.metadata["country"] == "FR" for h in namespace["french"]
    )
    assert "berlin" not in namespace["engine"].ids() and "rome" in namespace["engine"].ids()
    assert len(namespace["reranked"]) == 2 and len(namespace["best"]) == 2
    assert sorted(namespace["reopened"].ids()) == ["a", "b", "c"]
    assert sorted(namespace["chunked"].ids()) == ["berlin#0", "eiffel#0", "paris#0"]
    namespace["reopened"].close()
    namespace["engine"].close()
