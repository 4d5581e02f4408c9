"""Exact search over real vectors: colmax's two-pass ``top_k`` against one float32 GEMM.

The issue-20 measurement: SciFact raw MiniLM token vectors (``vectors_cache.py``; 1.24M
tokens, dim 384), one query at a time, 2 threads. Methods, interleaved per query in a rotated
order so a noisy neighbour hurts every method alike:

* ``baseline``: one float32 ``q @ tokens.T`` + ``scatter_reduce(amax)`` per document + top 10;
  the plainest exact search there is.
* ``colmax_<precision>``: :meth:`colmax.scoring.PackedDocuments.top_k` with ``k=10`` and the
  given first pass (``float32`` = no first pass), the flat index's search path.
* with ``--roofline``: the first-pass GEMM alone (``q @ block.T`` over the whole low-precision
  copy, block by block, nothing else): the floor the first pass cannot beat.
* with ``--rerank``: ``top_k`` restricted to 100 candidate documents (``doc_ids``), the path of
  re-ranking indexed candidates.

Every colmax path must return the same ids and scores as ``colmax_float32`` and the same
top-10 set as the baseline; the script counts both. It prints the machine (CPU model, flags,
``colmax.hardware`` summary, threads) and the load average before and after.

Usage (under the shared lock, at normal priority)::

    flock /tmp/colmax-bench.lock .venv/bin/python benchmarks/bench_two_pass.py --queries 20
    flock /tmp/colmax-bench.lock .venv/bin/python benchmarks/bench_two_pass.py --roofline --rerank

``COLMAX_BENCH_CACHE`` and ``--model`` pick a cache entry made elsewhere (see
``vectors_cache.py``; the model path only names the entry).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_maxsim import cpu_model
from vectors_cache import load_vectors

from colmax.hardware import detect
from colmax.scoring import PackedDocuments
from colmax.scoring._kernel import plan_ranges

__all__ = ["main"]

_BLOCK = 1 << 15  # rows per GEMM block in the roofline (as the kernel's blocks: L2-sized)
_EMPTY = torch.empty(0)


def machine_lines() -> list[str]:
    hw = detect()
    return [
        f"CPU: {cpu_model()}; torch {torch.__version__}, {torch.get_num_threads()} threads",
        hw.summary(),
        f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}",
    ]


def baseline_search(tokens: torch.Tensor, offsets: np.ndarray) -> Callable[[torch.Tensor], Any]:
    """One float32 GEMM over every token, the per-document max by ``scatter_reduce``, top 10."""
    n_docs = offsets.size - 1
    owner = torch.repeat_interleave(torch.arange(n_docs), torch.from_numpy(np.diff(offsets)))

    def search(q: torch.Tensor) -> np.ndarray:
        sim = q @ tokens.T
        best = torch.full((q.shape[0], n_docs), -torch.inf)
        best.scatter_reduce_(1, owner.expand(q.shape[0], -1), sim, "amax")
        return torch.topk(best.sum(0), 10).indices.numpy()

    return search


def _int8_rows(q: torch.Tensor, levels: int = 127) -> torch.Tensor:
    """Query tokens in int8 steps of their own largest value (as the first pass rounds them,
    to ``levels`` steps either side of zero: ``LowCopy.query_levels``)."""
    return torch.round(q / (q.abs().amax(1, keepdim=True) / levels)).to(torch.int8)


def gemm_only(pack: PackedDocuments) -> Callable[[torch.Tensor], None]:
    """The first pass's GEMM and nothing else, over the whole low-precision copy as the first
    pass reads it: pre-packed blocks where this machine packs them, else plain blocks."""
    low = pack._low
    if low is not None and low.packed is not None:
        ranges = plan_ranges(pack._plan(low.pack_block_rows), low.pack_block_rows)
        packed = low.packed

        def run_packed(q: torch.Tensor) -> None:
            ql = _int8_rows(q, packed.levels) if packed.kind == "int8" else q.to(torch.bfloat16)
            sims = packed.sims(ql)
            for a, b in ranges:
                sims(a, b, _EMPTY)

        return run_packed
    matrix = pack._matrix if low is None or low.matrix is None else low.matrix

    def run(q: torch.Tensor) -> None:
        if matrix.dtype == torch.int8:
            qi = _int8_rows(q)
            for a in range(0, matrix.shape[0], _BLOCK):
                torch._int_mm(qi, matrix[a : a + _BLOCK].T)
        else:
            ql = q.to(matrix.dtype)
            for a in range(0, matrix.shape[0], _BLOCK):
                torch.mm(ql, matrix[a : a + _BLOCK].T)

    return run


def filled_engine(vecs: Any, batch: int) -> Any:
    """An in-memory ``Engine`` holding every document, added ``batch`` at a time."""
    from colmax import Engine

    n_docs = vecs.doc_offsets.size - 1
    engine = Engine(dim=vecs.dim)
    start = time.perf_counter()
    for a in range(0, n_docs, batch):
        b = min(a + batch, n_docs)
        engine.add(
            embeddings=[np.asarray(vecs.doc(i), dtype=np.float32) for i in range(a, b)],
            ids=[f"d{i}" for i in range(a, b)],
        )
    info = engine.info()
    print(
        f"Engine: {n_docs:,} documents added {batch} at a time in "
        f"{time.perf_counter() - start:.1f} s; {info.details.get('segments')} segments",
        flush=True,
    )
    return engine


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", default="scifact")
    ap.add_argument("--model", default=None, help="the vectors' model (vectors_cache.py)")
    ap.add_argument("--queries", type=int, default=20, help="queries, evenly spaced")
    ap.add_argument("--precisions", default="float32,bfloat16,int8")
    ap.add_argument("--roofline", action="store_true", help="also time the GEMM alone")
    ap.add_argument("--rerank", action="store_true", help="also time top_k over 100 candidates")
    ap.add_argument(
        "--engine",
        type=int,
        default=0,
        metavar="BATCH",
        help="also time Engine.search (and Engine.rerank of 100 ids with --rerank) over an "
        "in-memory Engine filled in adds of BATCH documents (segments as a real index grows)",
    )
    args = ap.parse_args(argv)
    print("\n".join(machine_lines()), flush=True)
    vecs = load_vectors(args.dataset, args.model)
    n_q = len(vecs.query_ids)
    picks = np.linspace(0, n_q - 1, min(args.queries, n_q)).astype(int)
    queries = [torch.from_numpy(vecs.query(int(j)).astype(np.float32)) for j in picks]
    n_tok = vecs.doc_tokens.shape[0]
    print(
        f"{args.dataset}: {vecs.doc_offsets.size - 1:,} documents, {n_tok:,} tokens, dim "
        f"{vecs.dim}; {len(queries)} queries of {min(len(q) for q in queries)}-"
        f"{max(len(q) for q in queries)} tokens",
        flush=True,
    )
    packs: dict[str, PackedDocuments] = {}
    for p in args.precisions.split(","):
        start = time.perf_counter()
        packs[p] = PackedDocuments.from_arrays(vecs.doc_tokens, vecs.doc_offsets, compute_dtype=p)
        print(f"prepare {p}: {time.perf_counter() - start:.1f} s, {packs[p].nbytes >> 20} MiB")
    tokens32 = torch.from_numpy(vecs.doc_tokens.astype(np.float32))
    base = baseline_search(tokens32, vecs.doc_offsets)
    # Every method takes (query number, query).
    methods: dict[str, Callable[[int, torch.Tensor], Any]] = {"baseline": lambda i, q: base(q)}
    for p, pack in packs.items():
        methods[f"colmax_{p}"] = lambda i, q, pack=pack: pack.top_k([q], 10)[0]
    rng = np.random.default_rng(0)
    cands = [rng.choice(len(vecs.doc_ids), 100, replace=False) for _ in queries]
    if args.rerank:  # 100 random candidates per query, as an index's candidate list
        for p, pack in packs.items():
            methods[f"rerank100_{p}"] = lambda i, q, pack=pack: pack.top_k([q], 10, cands[i])[0]
    if args.engine:
        engine = filled_engine(vecs, args.engine)
        cand_ids = [[f"d{x}" for x in c] for c in cands]

        def engine_search(i: int, q: torch.Tensor) -> np.ndarray:
            hits = engine.search(query_embeddings=q.numpy(), k=10)
            return np.array([int(h.id[1:]) for h in hits])

        methods["engine_search"] = engine_search
        if args.rerank:
            methods["engine_rerank100"] = lambda i, q: engine.rerank(
                None, ids=cand_ids[i], query_embedding=q.numpy()
            )
    if args.roofline:
        for p, pack in packs.items():
            run = gemm_only(pack)
            methods[f"gemm_only_{p}"] = lambda i, q, run=run: run(q)
    names = list(methods)
    times: dict[str, list[float]] = {n: [] for n in names}
    same_set = dict.fromkeys(names, 0)
    identical = dict.fromkeys(names, 0)
    rescored: dict[str, list[int]] = {n: [] for n in names}
    for i, q in enumerate(queries):
        out: dict[str, Any] = {}
        for name in names[i % len(names) :] + names[: i % len(names)]:
            start = time.perf_counter()
            out[name] = methods[name](i, q)
            times[name].append(time.perf_counter() - start)
        best = set(out["baseline"].tolist())
        ref = out.get("colmax_float32")
        rref = out.get("rerank100_float32")
        for name in names:
            res = out[name]
            if name == "engine_search":
                same_set[name] += set(res.tolist()) == best
            if name.startswith("colmax_"):
                same_set[name] += set(res.ids[:10].tolist()) == best
                rescored[name].append(res.rescored)
                if ref is not None:
                    identical[name] += bool(
                        np.array_equal(res.ids, ref.ids) and np.array_equal(res.scores, ref.scores)
                    )
            elif name.startswith("rerank100_") and rref is not None:
                identical[name] += bool(
                    np.array_equal(res.ids, rref.ids) and np.array_equal(res.scores, rref.scores)
                )
    base_ms = statistics.median(times["baseline"]) * 1e3
    nq = len(queries)
    print(f"\n{nq} queries, interleaved; median ms per query; ratio = baseline / method")
    print(
        "| method | ms/query | vs baseline | same top-10 set as baseline | "
        "ids+scores identical to float32 path | re-scored docs (median) |"
    )
    print("|---|---:|---:|---|---|---:|")
    for name in names:
        ms = statistics.median(times[name]) * 1e3
        same = f"{same_set[name]}/{nq}" if name.startswith(("colmax_", "engine_s")) else ""
        ident = f"{identical[name]}/{nq}" if name.startswith(("colmax_", "rerank100_")) else ""
        resc = f"{statistics.median(rescored[name]):.0f}" if rescored[name] else ""
        if name == "baseline":
            same = f"{nq}/{nq}"
        print(f"| {name} | {ms:,.1f} | {base_ms / ms:.2f}x | {same} | {ident} | {resc} |")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
