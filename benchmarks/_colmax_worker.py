"""Builds and searches a colmax index (plaid or flat) in its own process, like the peers.

Started by ``bench_plaid.py`` with ``.venv/bin/python``::

    _colmax_worker.py plaid|flat VECTORS_DIR INDEX_DIR BUILD_JSON [--build-only|--add-increment]

The plaid build goes through the public bounded-memory path, ``Engine.add_stream`` over an
:class:`~colmax.indexes.plaid.NpyFileSource` (plain file reads, no memory map), with
``BUILD_JSON`` as ``index_options`` (``{}``: colmax's defaults); the flat one through
``Engine.add`` in batches. ``build.json`` records seconds, CPU seconds, peak RSS and the bytes
of the vector files (``segments/``, ``codecs/``). Searches time ``Engine.search`` with
precomputed query vectors; ``params`` are plaid's search widths (``nprobe``, ``ndocs``,
``nfinal``). Same protocol as ``_warp_peer_worker.py``.

``--add-increment`` adds the documents of ``increment_tokens.npy`` (written by
``bench_plaid_synthetic.py --increment``) to the built index with ``Engine.add_stream``, coded
with the existing centroids (no re-training), and records ``increment.json``: seconds, CPU
seconds, peak RSS, bytes, and the index's drift report (``info()["plaid"]``) before and after.
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

# isort: off
import colmax  # first: the thread policy applies before torch loads

# isort: on
import numpy as np
import torch

from colmax import Engine
from colmax.indexes.plaid import NpyFileSource

_FLAT_BATCH = 500  # documents per Engine.add call while building flat


def _protocol_stream() -> Any:
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return out


def _peak_rss_mb() -> float:
    """This process's peak resident memory, MB. Linux's ``VmHWM`` first: ``ru_maxrss``
    survives ``exec``, so a worker started by a large parent (the bench after its exact
    truth) would report the parent's size."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    return own.ru_utime + own.ru_stime


def _vector_bytes(path: Path) -> int:
    files = [*path.glob("segments/*"), *path.glob("codecs/*")]
    return sum(f.stat().st_size for f in files if f.is_file())


def build(method: str, vectors: Path, path: Path, options: dict[str, Any]) -> dict[str, Any]:
    offsets = np.load(vectors / "doc_offsets.npy")
    source = NpyFileSource(vectors / "doc_tokens.npy", offsets)
    ids = [str(i) for i in range(source.n_docs)]
    start, cpu = time.perf_counter(), _cpu_seconds()
    if method == "plaid":
        engine = Engine(dim=source.dim, index="plaid", path=path, index_options=options)
        engine.add_stream(source, ids=ids)
    else:
        engine = Engine(dim=source.dim, index="flat", path=path)
        for a in range(0, source.n_docs, _FLAT_BATCH):
            b = min(source.n_docs, a + _FLAT_BATCH)
            rows = source.read(a, b)
            cuts = offsets[a : b + 1] - offsets[a]
            docs = [rows[cuts[i] : cuts[i + 1]] for i in range(b - a)]
            engine.add(embeddings=docs, ids=ids[a:b])
    info = engine.info()
    engine.close()
    return {
        "build_seconds": time.perf_counter() - start,
        "build_cpu_seconds": _cpu_seconds() - cpu,
        "build_peak_rss_mb": _peak_rss_mb(),
        "bytes": _vector_bytes(path),
        "n_tokens": source.n_tokens,
        "options": options,
        "plaid": info.details.get("plaid"),
        "torch_threads": torch.get_num_threads(),
        "load_avg": os.getloadavg(),
    }


def add_increment(vectors: Path, path: Path) -> dict[str, Any]:
    n_docs = len(np.load(vectors / "doc_offsets.npy")) - 1
    source = NpyFileSource(
        vectors / "increment_tokens.npy", np.load(vectors / "increment_offsets.npy")
    )
    # The bench numbers documents by position: the increment's come after the corpus's.
    ids = [str(n_docs + i) for i in range(source.n_docs)]
    engine = Engine.load(path)
    before = engine.info().details.get("plaid")
    start, cpu = time.perf_counter(), _cpu_seconds()
    engine.add_stream(source, ids=ids)
    seconds, cpu_s = time.perf_counter() - start, _cpu_seconds() - cpu
    after = engine.info().details.get("plaid")
    engine.close()
    return {
        "add_seconds": seconds,
        "add_cpu_seconds": cpu_s,
        "add_peak_rss_mb": _peak_rss_mb(),
        "docs": source.n_docs,
        "tokens": source.n_tokens,
        "bytes_after": _vector_bytes(path),
        "drift_before": before,
        "drift_after": after,
        "load_avg": os.getloadavg(),
    }


def main() -> None:
    method, vectors, root = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    options = json.loads(sys.argv[4]) if len(sys.argv) > 4 else {}
    out = _protocol_stream()
    if "--add-increment" in sys.argv:
        (root / "increment.json").write_text(json.dumps(add_increment(vectors, root / "index")))
        return
    record = root / "build.json"
    if not record.is_file():
        root.mkdir(parents=True, exist_ok=True)
        info = build(method, vectors, root / "index", options)
        record.write_text(json.dumps(info))
    if "--build-only" in sys.argv:
        return
    info = json.loads(record.read_text())
    engine = Engine.load(root / "index")
    tokens = np.load(vectors / "query_tokens.npy")
    q_offsets = np.load(vectors / "query_offsets.npy")
    queries = [tokens[a:b].astype(np.float32) for a, b in itertools.pairwise(q_offsets)]
    policy = colmax.threads.current_policy()
    info.update(
        ready=True,
        name=f"colmax {method}",
        version=colmax.__version__,
        torch=torch.__version__,
        wait_policy=policy.wait_policy,
        pid=os.getpid(),
        load_rss_mb=_peak_rss_mb(),
    )
    print(json.dumps(info), file=out, flush=True)
    widths: dict[str, Any] = {}
    for line in sys.stdin:
        request = json.loads(line)
        if request.get("quit"):
            break
        threads = int(request.get("threads", 1))
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        params = request.get("params", {})
        if method == "plaid" and params != widths:
            widths_all = {"nprobe": None, "ndocs": None, "nfinal": None, **params}
            engine.backend.set_search_options(widths_all)  # type: ignore[attr-defined]
            widths = params
        q = queries[request["query"]]
        start = time.perf_counter()
        hits = engine.search(query_embeddings=q, k=request.get("k", 10))
        seconds = time.perf_counter() - start
        answer = {
            "seconds": seconds,
            "ids": [int(h.id) for h in hits],  # type: ignore[union-attr]
            "scores": [float(h.score) for h in hits],  # type: ignore[union-attr]
            "rss_mb": _peak_rss_mb(),
        }
        print(json.dumps(answer), file=out, flush=True)


if __name__ == "__main__":
    main()
