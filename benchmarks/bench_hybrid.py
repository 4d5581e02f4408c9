"""Hybrid retrieval: nDCG@10 and per-query latency of each mode (SciFact, Cranfield).

Modes, all on the same data, the same BM25 index and the same late-interaction engine:

* ``maxsim``: exact MaxSim over every document (flat engine, cached MiniLM vectors);
* ``bm25``: :class:`colmax.hybrid.BM25Index` (bm25s, English stopwords, Snowball stemmer);
* ``rrf``: reciprocal-rank fusion of both (top ``--candidates`` from each side, k=60);
* ``minmax``: min-max normalised scores, ``--weight`` on MaxSim;
* ``rerank``: BM25 top ``--candidates``, rescored by MaxSim from the stored vectors.

Quality is measured on every judged query. Latency is measured per query on a sample
(``--latency-queries``): for each query every mode runs end to end, in an order rotated from
one query to the next, so background load hits every mode alike; the table shows medians of
wall-clock time and of this process's CPU time (less sensitive to other jobs on the machine).
The query's MaxSim vectors come from the cache (encoding time is not included: it is the
same for every mode but ``bm25``, which needs none).

Usage::

    nice -n 10 .venv/bin/python benchmarks/bench_hybrid.py
    nice -n 10 .venv/bin/python benchmarks/bench_hybrid.py --datasets cranfield --latency-queries 20
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _jsonl_process import rotated
from bench_maxsim import cpu_model
from vectors_cache import CachedVectors, load_vectors

from colmax import Engine
from colmax.beir import load_beir
from colmax.hybrid import BM25Index, hybrid_search

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
MODES = ("maxsim", "bm25", "rrf", "minmax", "rerank")
ADD_BATCH = 500


def build(vecs: CachedVectors, dataset: str) -> tuple[Engine, BM25Index, dict[str, str], float]:
    engine = Engine(dim=vecs.dim)
    docs = vecs.docs()
    for i in range(0, len(docs), ADD_BATCH):
        engine.add(embeddings=docs[i : i + ADD_BATCH], ids=vecs.doc_ids[i : i + ADD_BATCH])
    data = load_beir(DATA / dataset)
    start = time.perf_counter()
    bm25 = BM25Index(vecs.doc_ids, [data.corpus[i] for i in vecs.doc_ids])
    build_s = time.perf_counter() - start
    return engine, bm25, data.queries, build_s


def runner(
    mode: str,
    engine: Engine,
    bm25: BM25Index,
    text: str,
    qvec: np.ndarray,
    args: argparse.Namespace,
    memo: dict | None = None,
) -> Callable[[], list[tuple[str, float]]]:
    """A no-argument function that answers one query end to end in ``mode``.

    ``memo`` shares the exact MaxSim top-n between modes (quality pass only: the ranking is
    the same, and SciFact's full searches are the slow part); latency runs pass none.
    """
    k = args.k

    def late(n: int) -> list[tuple[str, float]]:
        if memo is not None and memo.get("n", 0) >= n:
            return memo["hits"][:n]
        hits = [(h.id, h.score) for h in engine.search(query_embeddings=qvec, k=n)]  # type: ignore[union-attr]
        if memo is not None:
            memo.update(n=n, hits=hits)
        return hits

    def lexical(n: int) -> list[tuple[str, float]]:
        return bm25.search(text, n)

    def rerank(ids: list[str]) -> list[tuple[str, float]]:
        return [(h.id, h.score) for h in engine.rerank(None, ids=ids, query_embedding=qvec)]

    if mode == "maxsim":
        return lambda: late(k)
    if mode == "bm25":
        return lambda: lexical(k)
    return lambda: [
        (h.id, h.score)
        for h in hybrid_search(
            k,
            late=late,
            bm25=lexical,
            rerank=rerank,
            mode=mode,
            candidates=args.candidates,
            weight=args.weight,
        )
    ]


def quality(
    vecs: CachedVectors, engine: Engine, bm25: BM25Index, queries: dict, args: argparse.Namespace
) -> dict[str, float]:
    import ir_measures
    from ir_measures import nDCG

    runs: dict[str, dict[str, dict[str, float]]] = {m: {} for m in MODES}
    for j, qid in enumerate(vecs.query_ids):
        memo: dict = {}
        for mode in ("rrf", *MODES):  # rrf first: it fetches the largest MaxSim list
            hits = runner(mode, engine, bm25, queries[qid], vecs.query(j), args, memo)()
            # ir_measures ranks by score: use reciprocal ranks so ties cannot reorder the run.
            runs[mode][qid] = {id_: 1.0 / (r + 1) for r, (id_, _) in enumerate(hits)}
    return {
        m: float(ir_measures.calc_aggregate([nDCG @ 10], vecs.qrels, runs[m])[nDCG @ 10])
        for m in MODES
    }


def latency(
    vecs: CachedVectors, engine: Engine, bm25: BM25Index, queries: dict, args: argparse.Namespace
) -> dict[str, dict[str, float]]:
    """Median wall-clock and CPU (this process, all threads) milliseconds per query."""
    rng = np.random.default_rng(0)
    sample = rng.choice(
        len(vecs.query_ids), size=min(args.latency_queries, len(vecs.query_ids)), replace=False
    )
    wall: dict[str, list[float]] = {m: [] for m in MODES}
    cpu: dict[str, list[float]] = {m: [] for m in MODES}
    for turn, j in enumerate(sample.tolist()):
        order = rotated(MODES, turn)
        for mode in order:
            run = runner(mode, engine, bm25, queries[vecs.query_ids[j]], vecs.query(j), args)
            start, start_cpu = time.perf_counter(), time.process_time()
            run()
            wall[mode].append(1000 * (time.perf_counter() - start))
            cpu[mode].append(1000 * (time.process_time() - start_cpu))
    return {
        m: {"wall_ms": statistics.median(wall[m]), "cpu_ms": statistics.median(cpu[m])}
        for m in MODES
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", default=["scifact", "cranfield"])
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--candidates", type=int, default=100)
    parser.add_argument("--weight", type=float, default=0.5)
    parser.add_argument("--latency-queries", type=int, default=50)
    parser.add_argument("--skip-quality", action="store_true", help="latency only")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args()
    print(f"CPU: {cpu_model()}, torch threads: {torch.get_num_threads()}, cores: {os.cpu_count()}")
    out = {}
    for dataset in args.datasets:
        vecs = load_vectors(dataset)
        engine, bm25, queries, build_s = build(vecs, dataset)
        print(f"\n{dataset}: {len(vecs.doc_ids)} documents, {engine.info().tokens} vectors, "
              f"{len(vecs.query_ids)} queries; BM25 index built in {build_s:.2f}s")  # fmt: skip
        nan = float("nan")
        ndcg = (
            {m: nan for m in MODES}
            if args.skip_quality
            else quality(vecs, engine, bm25, queries, args)
        )
        ms = latency(vecs, engine, bm25, queries, args)
        print(f"{'mode':8s} {'nDCG@10':>8s} {'wall ms/query':>14s} {'CPU ms/query':>13s}")
        for m in MODES:
            print(f"{m:8s} {ndcg[m]:8.4f} {ms[m]['wall_ms']:14.1f} {ms[m]['cpu_ms']:13.1f}")
        out[dataset] = {"ndcg10": ndcg, "median": ms, "bm25_build_s": build_s}
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
