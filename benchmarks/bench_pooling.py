"""Token pooling: index size and nDCG@10 for pool factors 1, 2, 3 (SciFact, Cranfield).

Document vectors come from the shared cache (``vectors_cache.py``: raw MiniLM, dim 384), so
nothing is re-encoded. For each pool factor the documents are pooled, indexed in a flat
``Engine(dim=384)`` with precomputed vectors, and every judged query is searched (k=100).

Methods, side by side on the same vectors:

* ``colmax``: :func:`colmax.pooling.pool_documents` (Ward on unit vectors, ``ceil(n / f)``
  clusters, no protected token);
* ``colmax+cls``: the same with ``protected_tokens=1`` (the [CLS] vector kept apart, as PyLate
  does);
* ``pylate``: PyLate 1.6 ``ColBERT.pool_embeddings_hierarchical`` (Ward on ``1 - cos``,
  ``floor(n / f)`` clusters, ``protected_tokens=1``), run in the peers' virtual environment
  (skipped when ``.venv-peers`` is missing).

Usage::

    nice -n 10 .venv/bin/python benchmarks/bench_pooling.py                  # both data sets
    nice -n 10 .venv/bin/python benchmarks/bench_pooling.py --datasets cranfield --factors 1 2
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_maxsim import cpu_model
from vectors_cache import CachedVectors, load_vectors

from colmax import Engine
from colmax.pooling import pool_documents

ROOT = Path(__file__).resolve().parents[1]
PEERS_PYTHON = ROOT / ".venv-peers" / "bin" / "python"
ADD_BATCH = 500  # documents per Engine.add call: bounds the float32 copies in memory

PYLATE_POOL = """
import json, sys, time
import numpy as np, torch
from pylate.models import ColBERT
folder, out, factor, n_docs = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
tokens = np.load(folder + "/doc_tokens.npy", mmap_mode="r")
offsets = np.load(folder + "/doc_offsets.npy")
offsets = offsets[: n_docs + 1] if n_docs else offsets
# PyLate pools the float32 unit vectors its model returns: widen and renormalise the cache's
# float16 copies the same way.
docs = [torch.nn.functional.normalize(torch.from_numpy(np.asarray(tokens[a:b], dtype=np.float32)), dim=-1)
        for a, b in zip(offsets, offsets[1:])]
start, start_cpu = time.perf_counter(), time.process_time()
pooled = ColBERT.pool_embeddings_hierarchical(None, docs, pool_factor=factor, protected_tokens=1)
seconds, cpu = time.perf_counter() - start, time.process_time() - start_cpu
if out != "-":
    lengths = np.array([len(p) for p in pooled])
    np.save(out + "/tokens.npy", np.concatenate([p.numpy() for p in pooled]).astype(np.float16))
    np.save(out + "/offsets.npy", np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64))
print(json.dumps({"seconds": seconds, "cpu_seconds": cpu}))
"""


def pool_colmax(vecs: CachedVectors, factor: int, protected: int) -> tuple[list, float]:
    docs = vecs.docs()
    start = time.perf_counter()
    pooled = pool_documents(docs, factor, protected_tokens=protected) if factor > 1 else docs
    return pooled, time.perf_counter() - start


def pool_pylate(vecs: CachedVectors, factor: int) -> tuple[list, float] | None:
    if not PEERS_PYTHON.is_file():
        return None
    with tempfile.TemporaryDirectory() as out:
        cmd = [str(PEERS_PYTHON), "-c", PYLATE_POOL, str(vecs.folder), out, str(factor), "0"]
        result = subprocess.run(cmd, capture_output=True, text=True, check=True)
        seconds = json.loads(result.stdout.strip().splitlines()[-1])["seconds"]
        tokens, offsets = np.load(f"{out}/tokens.npy"), np.load(f"{out}/offsets.npy")
    return [tokens[a:b] for a, b in itertools.pairwise(offsets)], seconds


def pooling_speed(vecs: CachedVectors, factor: int, n_docs: int, repeats: int) -> dict:
    """Median wall and CPU seconds to pool the first ``n_docs`` documents, colmax and PyLate
    alternating (PyLate in a fresh peers process each time; only its pooling call is timed)."""
    docs = vecs.docs()[:n_docs]
    times: dict[str, list[tuple[float, float]]] = {"colmax": [], "pylate": []}
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        pool_documents(docs, factor)
        times["colmax"].append((time.perf_counter() - start, time.process_time() - start_cpu))
        if PEERS_PYTHON.is_file():
            cmd = [str(PEERS_PYTHON), "-c", PYLATE_POOL, str(vecs.folder), "-", str(factor)]
            result = subprocess.run([*cmd, str(n_docs)], capture_output=True, text=True, check=True)
            row = json.loads(result.stdout.strip().splitlines()[-1])
            times["pylate"].append((row["seconds"], row["cpu_seconds"]))
    return {
        name: {
            "wall_s": statistics.median(w for w, _ in t),
            "cpu_s": statistics.median(c for _, c in t),
        }
        for name, t in times.items()
        if t
    }


def evaluate(vecs: CachedVectors, docs: list, k: int = 100) -> dict:
    import ir_measures
    from ir_measures import R, nDCG

    engine = Engine(dim=vecs.dim)
    for i in range(0, len(docs), ADD_BATCH):
        engine.add(embeddings=docs[i : i + ADD_BATCH], ids=vecs.doc_ids[i : i + ADD_BATCH])
    tokens = engine.info().tokens
    queries = vecs.queries()
    run: dict[str, dict[str, float]] = {}
    start = time.perf_counter()
    for i in range(0, len(queries), 32):
        results = engine.search(query_embeddings=queries[i : i + 32], k=k)
        for qid, hits in zip(vecs.query_ids[i : i + 32], results):
            run[qid] = {h.id: h.score for h in hits}  # type: ignore[union-attr]
    search_s = time.perf_counter() - start
    agg = ir_measures.calc_aggregate([nDCG @ 10, R @ 100], vecs.qrels, run)
    return {
        "tokens": tokens,
        "mib": tokens * vecs.dim * 2 / 2**20,  # float16 token matrix
        "ndcg10": float(agg[nDCG @ 10]),
        "recall100": float(agg[R @ 100]),
        "ms_per_query": 1000 * search_s / len(queries),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", default=["scifact", "cranfield"])
    parser.add_argument("--factors", nargs="+", type=int, default=[1, 2, 3])
    parser.add_argument("--no-peer", action="store_true", help="skip the PyLate runs")
    parser.add_argument("--json", type=Path, help="also write the rows here")
    parser.add_argument(
        "--speed-docs", type=int, default=0, help="only time pooling on this many documents"
    )
    parser.add_argument("--speed-repeats", type=int, default=3)
    args = parser.parse_args()
    if args.speed_docs:
        print(f"CPU: {cpu_model()}, torch threads: {torch.get_num_threads()}")
        for dataset in args.datasets:
            vecs = load_vectors(dataset)
            for factor in [f for f in args.factors if f > 1]:
                speed = pooling_speed(vecs, factor, args.speed_docs, args.speed_repeats)
                print(dataset, f"f={factor}", json.dumps(speed), flush=True)
        return
    print(f"CPU: {cpu_model()}, torch threads: {torch.get_num_threads()}, cores: {os.cpu_count()}")
    rows = []
    for dataset in args.datasets:
        vecs = load_vectors(dataset)
        print(f"\n{dataset}: {len(vecs.doc_ids)} documents, {len(vecs.query_ids)} queries")
        print(f"{'method':12s} {'f':>2s} {'vectors':>10s} {'MiB':>8s} {'nDCG@10':>8s} "
              f"{'R@100':>6s} {'pool s':>7s} {'ms/query':>9s}")  # fmt: skip
        for factor in args.factors:
            methods = ["colmax"] + (["colmax+cls", "pylate"] if factor > 1 else [])
            for name in methods:
                if name == "pylate" and args.no_peer:
                    continue
                pooled = (
                    pool_pylate(vecs, factor)
                    if name == "pylate"
                    else pool_colmax(vecs, factor, int(name == "colmax+cls"))
                )
                if pooled is None:
                    continue
                docs, seconds = pooled
                row = {"dataset": dataset, "method": name, "factor": factor,
                       "pool_seconds": seconds, **evaluate(vecs, docs)}  # fmt: skip
                rows.append(row)
                print(f"{name:12s} {factor:2d} {row['tokens']:10d} {row['mib']:8.1f} "
                      f"{row['ndcg10']:8.4f} {row['recall100']:6.3f} {seconds:7.1f} "
                      f"{row['ms_per_query']:9.1f}", flush=True)  # fmt: skip
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
