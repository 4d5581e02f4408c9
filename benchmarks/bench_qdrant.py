"""index="qdrant" against colmax's flat index on the same vectors: build time, latency, recall.

Document and query vectors come from the shared cache (``vectors_cache.py``: raw MiniLM,
dim 384, float16), so nothing is re-encoded and every index sees identical vectors. Indexes,
all through the public ``Engine`` API with precomputed vectors:

* ``flat``: colmax's exact index, in an index folder (the reference);
* ``qdrant-edge``: qdrant-edge in an index folder, exact MaxSim (no prefetch);
* ``edge-float16``: the same with token vectors stored as float16 (the flat index's precision);
* ``qdrant-memory``: qdrant-client's in-memory local mode (pure Python), exact MaxSim; timed
  on the first repeat only (``--memory-queries`` queries), with numpy's BLAS held to one thread
  (its OpenBLAS threads spin badly on a busy 2-core machine: 15x slower in a check here);
* ``edge+mean`` / ``edge+muvera``: qdrant-edge two-stage search, ``--prefetch`` candidates by
  the pooled vector, reranked by MaxSim inside Qdrant.

Build time is wall time of ``Engine.add`` calls of ``--add-batch`` documents each (each call
commits durably), plus ``optimize()`` for the two-stage indexes. Latency: one query per
``search`` call (k=10), every query ``--repeats`` times, the indexes in a rotated order for each
query so that machine noise hits all of them alike; p50 / p95 over all calls. Recall@10 is the
overlap with the flat index's top 10; nDCG@10 uses the data set's judgments.

Usage::

    nice -n 10 .venv/bin/python benchmarks/bench_qdrant.py                 # Cranfield
    nice -n 10 .venv/bin/python benchmarks/bench_qdrant.py --dataset scifact --repeats 1
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_maxsim import cpu_model
from vectors_cache import CachedVectors, load_vectors

from colmax import Engine

K = 10


def indexes(prefetch: int) -> dict[str, dict[str, Any]]:
    """Name -> Engine arguments (``path`` is filled in per run)."""
    return {
        "flat": {"index": "flat", "folder": True},
        "qdrant-edge": {"index": "qdrant", "folder": True},
        "edge-float16": {"index": "qdrant", "folder": True, "options": {"datatype": "float16"}},
        "qdrant-memory": {"index": "qdrant", "folder": False},
        "edge+mean": {
            "index": "qdrant",
            "folder": True,
            "options": {"prefetch": "mean", "prefetch_limit": prefetch},
        },
        "edge+muvera": {
            "index": "qdrant",
            "folder": True,
            "options": {"prefetch": "muvera", "prefetch_limit": prefetch},
        },
    }


def blas_limit(on: bool) -> Any:
    if not on:
        return nullcontext()
    from threadpoolctl import threadpool_limits

    return threadpool_limits(1, user_api="blas")


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


def build(
    vecs: CachedVectors, spec: dict[str, Any], root: Path, name: str, batch: int
) -> tuple[Engine, float]:
    path = root / name if spec["folder"] else None
    engine = Engine(dim=vecs.dim, index=spec["index"], path=path, index_options=spec.get("options"))
    start = time.perf_counter()
    for a in range(0, len(vecs.doc_ids), batch):
        ids = vecs.doc_ids[a : a + batch]
        docs = [np.asarray(vecs.doc(i), dtype=np.float32) for i in range(a, a + len(ids))]
        engine.add(embeddings=docs, ids=ids)
    if "prefetch" in spec.get("options", {}):
        engine.backend.optimize()  # builds the pooled vectors' HNSW graph
    return engine, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dataset", default="cranfield")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--prefetch", type=int, default=100, help="two-stage candidates")
    parser.add_argument("--add-batch", type=int, default=200)
    parser.add_argument("--only", nargs="*", default=None, help="subset of index names")
    parser.add_argument(
        "--memory-queries", type=int, default=None, help="queries for qdrant-memory (all)"
    )
    parser.add_argument("--out", type=Path, default=None, help="write the JSON results here")
    parser.add_argument("--model", default=None, help="the vectors' model (vectors_cache.py)")
    args = parser.parse_args()

    vecs = load_vectors(args.dataset, args.model)
    queries = [torch.from_numpy(np.asarray(q, dtype=np.float32)) for q in vecs.queries()]
    specs = indexes(args.prefetch)
    names = [n for n in specs if args.only is None or n in args.only or n == "flat"]
    root = Path(tempfile.mkdtemp(prefix="bench-qdrant-"))
    engines: dict[str, Engine] = {}
    rows: dict[str, dict[str, Any]] = {}
    try:
        for name in names:
            engine, seconds = build(vecs, specs[name], root, name, args.add_batch)
            engines[name] = engine
            size = folder_bytes(root / name) if specs[name]["folder"] else None
            rows[name] = {"build_s": seconds, "disk_bytes": size}
            print(f"built {name:14s} in {seconds:7.1f}s", flush=True)

        latencies: dict[str, list[float]] = {n: [] for n in names}
        results: dict[str, dict[int, list[str]]] = {n: {} for n in names}
        scores: dict[str, dict[int, list[float]]] = {n: {} for n in names}
        n_memory = len(queries) if args.memory_queries is None else args.memory_queries
        for rep in range(args.repeats):
            for j, q in enumerate(queries):
                shift = (j + rep) % len(names)
                for name in names[shift:] + names[:shift]:
                    if name == "qdrant-memory" and (rep > 0 or j >= n_memory):
                        continue
                    with blas_limit(name == "qdrant-memory"):
                        start = time.perf_counter()
                        hits = engines[name].search(query_embeddings=q, k=K)
                        latencies[name].append(time.perf_counter() - start)
                    results[name][j] = [h.id for h in hits]
                    scores[name][j] = [h.score for h in hits]

        import ir_measures
        from ir_measures import nDCG

        for name in names:
            flat_r, flat_s = results["flat"], scores["flat"]
            done = sorted(results[name])
            same = sum(results[name][j] == flat_r[j] for j in done)
            overlap = np.mean([len(set(results[name][j]) & set(flat_r[j])) / K for j in done])
            diffs = [
                abs(a - b)
                for j in done
                if results[name][j] == flat_r[j]
                for a, b in zip(scores[name][j], flat_s[j])
            ]
            run = {vecs.query_ids[j]: dict(zip(results[name][j], scores[name][j])) for j in done}
            qrels = {q: vecs.qrels[q] for q in run if q in vecs.qrels}
            ndcg = ir_measures.calc_aggregate([nDCG @ 10], qrels, run)[nDCG @ 10]
            lat = np.asarray(latencies[name]) * 1000
            rows[name].update(
                p50_ms=float(np.percentile(lat, 50)),
                p95_ms=float(np.percentile(lat, 95)),
                recall10_vs_flat=float(overlap),
                same_top10_ids=f"{same}/{len(done)}",
                max_score_diff=float(max(diffs, default=0.0)),
                ndcg10=float(ndcg),
            )
    finally:
        for engine in engines.values():
            engine.close()
        shutil.rmtree(root, ignore_errors=True)

    flat_p50 = rows["flat"]["p50_ms"]
    print(
        f"\n{args.dataset}: {len(vecs.doc_ids)} docs, {len(vecs.doc_tokens)} tokens, dim "
        f"{vecs.dim}, {len(queries)} queries x {args.repeats}; CPU {cpu_model()}, "
        f"{os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}"
    )
    print(
        "| index | build (s) | disk (MB) | p50 (ms) | p95 (ms) | p50 vs flat | recall@10 vs flat "
        "| same top-10 | max score diff | nDCG@10 |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for name in names:
        r = rows[name]
        disk = f"{r['disk_bytes'] / 2**20:.0f}" if r["disk_bytes"] is not None else "(RAM)"
        print(
            f"| {name} | {r['build_s']:.1f} | {disk} | {r['p50_ms']:.1f} | {r['p95_ms']:.1f} | "
            f"{r['p50_ms'] / flat_p50:.2f}x | {r['recall10_vs_flat']:.4f} | "
            f"{r['same_top10_ids']} | {r['max_score_diff']:.1e} | {r['ndcg10']:.4f} |"
        )
    if args.out is not None:
        meta = {"dataset": args.dataset, "cpu": cpu_model(), "repeats": args.repeats}
        args.out.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
