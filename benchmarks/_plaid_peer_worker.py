"""Builds and searches PyLate's PLAID (colbert-ai backend) or Voyager index, in the peers' venv.

Started by ``bench_plaid.py`` with ``.venv-peers/bin/python``::

    _plaid_peer_worker.py plaid|voyager VECTORS_DIR INDEX_DIR

``VECTORS_DIR`` is a ``benchmarks/vectors_cache.py`` entry (``doc_tokens.npy`` float16 +
``doc_offsets.npy``, ``query_tokens.npy`` + ``query_offsets.npy``). The index is built once
under ``INDEX_DIR`` and reused by later runs (``build.json`` records how long the build took
and how many bytes it wrote). Document ids are the corpus positions as strings.

Protocol: one JSON line ``{"ready": true, "build_seconds": ..., "bytes": ..., ...}`` after the
build, then one JSON answer per request line ``{"query": j, "k": 10}``:
``{"seconds": ..., "ids": [...], "scores": [...]}`` where ``seconds`` times PyLate's public
search call for that one query.

Fairness notes: PyLate re-reads its id-mapping pickles from disk on every call (1.2 M entries
for Voyager); the worker loads them once and serves them from memory, so the timings measure
the search itself. PLAID runs with ``use_fast=False`` (colbert-ai's Stanford implementation:
fast-plaid segfaults with torch 2.13 here), nbits=2 and PyLate's other defaults; Voyager with
PyLate's defaults (M=64, ef_construction=200, ef_search=200, k_token=100).
"""

from __future__ import annotations

import itertools
import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np


def _docs(folder: Path) -> list[np.ndarray]:
    tokens = np.load(folder / "doc_tokens.npy", mmap_mode="r")
    offsets = np.load(folder / "doc_offsets.npy")
    return [np.asarray(tokens[a:b], dtype=np.float32) for a, b in itertools.pairwise(offsets)]


def _queries(folder: Path) -> list[np.ndarray]:
    tokens = np.load(folder / "query_tokens.npy")
    offsets = np.load(folder / "query_offsets.npy")
    return [tokens[a:b].astype(np.float32) for a, b in itertools.pairwise(offsets)]


def _folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _cpu_seconds() -> float:
    """CPU time of this process and its finished children (load-independent build cost)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _cache_loader(index: Any, name: str) -> None:
    """Replace ``index.<name>()`` (a pickle read per call) by one read kept in memory."""
    value = getattr(index, name)()
    setattr(index, name, lambda: value)


def _open(method: str, root: Path, dim: int, build: bool) -> Any:
    from pylate import indexes

    if method == "plaid":
        return indexes.PLAID(
            index_folder=str(root),
            index_name="plaid",
            override=build,
            use_fast=False,
            nbits=2,
            embedding_size=dim,
        )
    return indexes.Voyager(
        index_folder=str(root), index_name="voyager", override=build, embedding_size=dim
    )


def _protocol_stream() -> Any:
    """A private handle on the real stdout; fd 1 (and ``sys.stdout``) then go to stderr, so
    whatever the libraries print (colbert-ai prints its config, C++ builds print too) cannot
    break the one-JSON-line-per-answer protocol."""
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return out


def main() -> None:
    method, vectors, root = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    out = _protocol_stream()
    import torch

    queries = _queries(vectors)
    dim = int(queries[0].shape[1])
    record = root / "build.json"
    if record.is_file():
        index = _open(method, root, dim, build=False)
        info = json.loads(record.read_text())
    else:
        docs = _docs(vectors)
        root.mkdir(parents=True, exist_ok=True)
        start, cpu = time.perf_counter(), _cpu_seconds()
        index = _open(method, root, dim, build=True)
        index.add_documents(
            documents_ids=[str(i) for i in range(len(docs))], documents_embeddings=docs
        )
        seconds, cpu = time.perf_counter() - start, _cpu_seconds() - cpu
        n_tokens = sum(len(d) for d in docs)
        info = {
            "build_seconds": seconds,
            "build_cpu_seconds": cpu,
            "bytes": _folder_bytes(root),
            "n_tokens": n_tokens,
        }
        record.write_text(json.dumps(info))
        del docs
    if method == "plaid":
        inner = index._index
        _cache_loader(inner, "_load_plaid_ids_to_documents_ids")

        def search(q: np.ndarray, k: int) -> list[Any]:
            return index([q], k=k)[0]
    else:
        from pylate import retrieve

        _cache_loader(index, "_load_embeddings_to_documents_ids")
        _cache_loader(index, "_load_documents_ids_to_embeddings")
        retriever = retrieve.ColBERT(index=index)

        def search(q: np.ndarray, k: int) -> list[Any]:
            return retriever.retrieve([q], k=k, device="cpu")[0]

    info.update(
        ready=True,
        torch=torch.__version__,
        threads=torch.get_num_threads(),
        pid=os.getpid(),
    )
    print(json.dumps(info), file=out, flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        q = queries[request["query"]]
        start = time.perf_counter()
        hits = search(q, request.get("k", 10))
        seconds = time.perf_counter() - start
        ids = [int(h["id"]) for h in hits]
        scores = [float(h["score"]) for h in hits]
        print(json.dumps({"seconds": seconds, "ids": ids, "scores": scores}), file=out, flush=True)


if __name__ == "__main__":
    main()
