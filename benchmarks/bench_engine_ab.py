"""A/B of two colmax source trees on the engine's hot paths: add and search, flat and plaid.

Each measurement runs in a fresh process with ``PYTHONPATH=<tree>/src``, on the same synthetic
vectors (no model: the engine's own overhead and the index are what is measured, not
encoding). By default the trees are interleaved (A B A B ...); with ``--concurrent`` each round
runs A and B at the same time, one thread each, so both see the same machine load (on a host
shared with other jobs, load that drifts between sequential runs swamps a few per cent).
Reports the median of each metric per tree, B/A, and the median of the per-round ratios.

Usage (under the shared benchmark lock, at normal priority)::

    flock /tmp/colmax-bench.lock .venv/bin/python benchmarks/bench_engine_ab.py \\
        --a /tmp/before --b /tmp/after --rounds 5 --out /tmp/ab.json

Metrics (seconds): ``bulk_add`` (the corpus in batches of 500, committed to a folder),
``small_add`` (median of 20 adds of 5 documents each), ``search`` (median single-query latency,
k = 10, over 60 queries), ``search_filtered`` (the same with a metadata filter that keeps half
the corpus).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DIM = 128


def _corpus(n_docs: int, seed: int = 0) -> tuple[list, list]:
    import numpy as np

    rng = np.random.default_rng(seed)
    topics = rng.standard_normal((64, DIM)).astype(np.float32)
    docs = []
    for _ in range(n_docs):
        n = int(rng.integers(40, 120))
        base = topics[rng.integers(0, 64, size=n)]
        x = base + 0.5 * rng.standard_normal((n, DIM)).astype(np.float32)
        docs.append(x / np.linalg.norm(x, axis=1, keepdims=True))
    queries = []
    for _ in range(60):
        x = topics[rng.integers(0, 64, size=32)] + 0.5 * rng.standard_normal((32, DIM))
        queries.append((x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32))
    return docs, queries


def worker(kind: str, n_docs: int) -> dict[str, float]:
    """Run in the tree under test (its ``colmax`` is first on ``sys.path``)."""
    import numpy as np

    from colmax import Engine

    docs, queries = _corpus(n_docs)
    ids = [f"d{i}" for i in range(n_docs)]
    metas = [{"half": i % 2} for i in range(n_docs)]
    with tempfile.TemporaryDirectory() as tmp:
        engine = Engine(dim=DIM, index=kind, path=Path(tmp) / "idx")
        start = time.perf_counter()
        for a in range(0, n_docs, 500):
            engine.add(
                embeddings=docs[a : a + 500], ids=ids[a : a + 500], metadatas=metas[a : a + 500]
            )
        bulk = time.perf_counter() - start
        rng = np.random.default_rng(1)
        small = []
        for r in range(20):
            pick = rng.integers(0, n_docs, size=5)
            start = time.perf_counter()
            engine.add(
                embeddings=[docs[i] for i in pick],
                ids=[f"new{r}-{j}" for j in range(5)],
                metadatas=[{"half": 0}] * 5,
            )
            small.append(time.perf_counter() - start)
        for q in queries[:5]:  # warm-up
            engine.search(query_embeddings=q, k=10)
        lat, lat_f = [], []
        for q in queries:
            start = time.perf_counter()
            engine.search(query_embeddings=q, k=10)
            lat.append(time.perf_counter() - start)
            start = time.perf_counter()
            engine.search(query_embeddings=q, k=10, filter={"half": 1})
            lat_f.append(time.perf_counter() - start)
        engine.close()
    return {
        "bulk_add": bulk,
        "small_add": statistics.median(small),
        "search": statistics.median(lat),
        "search_filtered": statistics.median(lat_f),
    }


def _start(tree: Path, kind: str, n_docs: int, threads: int) -> subprocess.Popen[str]:
    env = {
        **os.environ,
        "PYTHONPATH": str(tree / "src"),
        "OMP_NUM_THREADS": str(threads),
        "MKL_NUM_THREADS": str(threads),
    }
    return subprocess.Popen(
        [
            sys.executable,
            __file__,
            "--worker",
            kind,
            "--docs",
            str(n_docs),
            "--threads",
            str(threads),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _result(proc: subprocess.Popen[str]) -> dict[str, float]:
    out, err = proc.communicate()
    if proc.returncode != 0:
        raise RuntimeError(f"worker failed: {err[-2000:]}")
    return json.loads(out.strip().splitlines()[-1])


def _run(tree: Path, kind: str, n_docs: int, threads: int) -> dict[str, float]:
    return _result(_start(tree, kind, n_docs, threads))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--a", type=Path, help="source tree A (the baseline)")
    parser.add_argument("--b", type=Path, help="source tree B")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--docs", type=int, default=3000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--kinds", default="flat,plaid")
    parser.add_argument("--concurrent", action="store_true", help="run A and B at once")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        import torch

        torch.set_num_threads(args.threads)
        print(json.dumps(worker(args.worker, args.docs)))
        return
    results: dict[str, dict[str, list[dict[str, float]]]] = {}
    for kind in args.kinds.split(","):
        results[kind] = {"a": [], "b": []}
        for r in range(args.rounds):
            if args.concurrent:
                procs = {
                    s: _start(t, kind, args.docs, args.threads)
                    for s, t in (("a", args.a), ("b", args.b))
                }
                for side, proc in procs.items():
                    results[kind][side].append(_result(proc))
                    print(kind, side, results[kind][side][-1], file=sys.stderr, flush=True)
                continue
            order = ("a", "b") if r % 2 == 0 else ("b", "a")  # interleaved, alternating first
            for side in order:
                tree = args.a if side == "a" else args.b
                results[kind][side].append(_run(tree, kind, args.docs, args.threads))
                print(kind, side, results[kind][side][-1], file=sys.stderr, flush=True)
    summary = {}
    for kind, sides in results.items():
        for metric in sides["a"][0]:
            a = statistics.median(x[metric] for x in sides["a"])
            b = statistics.median(x[metric] for x in sides["b"])
            # Each round ran A and B back to back: the median of the per-round ratios is less
            # sensitive to a load that drifts over the whole run than the ratio of medians.
            paired = statistics.median(
                y[metric] / x[metric] for x, y in zip(sides["a"], sides["b"])
            )
            summary[f"{kind}.{metric}"] = {"a": a, "b": b, "b_over_a": b / a, "paired": paired}
            print(
                f"{kind:6} {metric:16} A {a * 1000:9.2f} ms  B {b * 1000:9.2f} ms  "
                f"B/A {b / a:.3f}  paired B/A {paired:.3f}"
            )
    if args.out:
        args.out.write_text(json.dumps({"runs": results, "summary": summary}, indent=2))


if __name__ == "__main__":
    main()
