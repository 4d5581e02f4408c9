"""colmax's token vectors equal PyLate's on checkpoints made by PyLate and by colbert-ai.

``scripts/make_checkpoints.py`` (peers' environment) saves a PyLate checkpoint and a colbert-ai
checkpoint of the MiniLM weights, loads each *saved* folder with PyLate and dumps its vectors
for ten awkward queries and ten awkward documents, with default and non-default settings. Here
colmax loads the same folders and must give the same token count per text, the same kept
token ids, and vectors within 1e-4 of PyLate's.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from colmax.encoders import load_encoder

ATOL = 1e-4
DUMPS = ("pylate", "stanford", "pylate_attend", "pylate_no_expansion", "stanford_short")


@pytest.mark.parametrize("kind", ["queries", "documents"])
@pytest.mark.parametrize("dump", DUMPS)
def test_embeddings_equal_pylate(parity_dir: Path, dump: str, kind: str) -> None:
    record = json.loads((parity_dir / f"{dump}.json").read_text(encoding="utf-8"))
    encoder = load_encoder(
        parity_dir / record["folder"], device="cpu", dtype="float32", **record["overrides"]
    )
    texts = record[kind]
    ours = (encoder.encode_queries if kind == "queries" else encoder.encode_documents)(texts)
    counts = record[f"{kind}_counts"]
    assert [int(v.shape[0]) for v in ours] == counts, "token counts differ"
    ids = [
        [p.input_ids[k] for k in p.keep]
        for p in encoder.plan.prepare(texts, is_query=kind == "queries")
    ]
    assert ids == record[f"{kind}_ids"], "kept token ids differ"
    flat = np.load(parity_dir / f"{dump}_{kind}.npy", allow_pickle=False)
    theirs = np.split(flat, np.cumsum(counts)[:-1])
    worst = max(float(np.abs(o.numpy() - t).max()) for o, t in zip(ours, theirs, strict=True))
    assert worst <= ATOL, f"max abs diff {worst:.2e} > {ATOL}"


@pytest.mark.parametrize("kind", ["queries", "documents"])
def test_colbertai_encoder_agrees(parity_dir: Path, kind: str) -> None:
    """colbert-ai's own ``Checkpoint`` on its checkpoint: the same vectors, except for a
    document that spells the markers ``[Q]`` / ``[D]`` literally (colbert-ai's tokenizer
    splits those differently; colmax follows PyLate there)."""
    path = parity_dir / "stanford_colbertai.json"
    if not path.is_file():
        pytest.fail("make_checkpoints.py did not dump colbert-ai's own embeddings")
    record = json.loads(path.read_text(encoding="utf-8"))
    encoder = load_encoder(parity_dir / "stanford", device="cpu", dtype="float32")
    texts = record[kind]
    ours = (encoder.encode_queries if kind == "queries" else encoder.encode_documents)(texts)
    counts = record[f"{kind}_counts"]
    flat = np.load(parity_dir / f"stanford_colbertai_{kind}.npy", allow_pickle=False)
    theirs = np.split(flat, np.cumsum(counts)[:-1])
    diffs, differ = [], []
    for text, o, t in zip(texts, ours, theirs, strict=True):
        if o.shape == t.shape:
            diffs.append(float(np.abs(o.numpy() - t).max()))
        else:
            differ.append(text)
    assert all("[Q]" in text for text in differ), differ
    assert len(diffs) >= len(texts) - 1
    assert max(diffs) <= ATOL
