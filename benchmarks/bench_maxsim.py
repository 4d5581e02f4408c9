"""Exact MaxSim kernels side by side: ms per query per million document tokens.

Methods (all float32 compute, all exact):

* ``naive_fp32``: what common libraries do: pad every document to the longest, one einsum
  ``(queries, docs, q_tokens, d_tokens)``, fill padding with -inf, max, sum (chunked over
  documents only so that it fits in memory).
* ``colmax_maxsim``: :func:`colmax.scoring.maxsim` on the same padded batch.
* ``colmax_packed``: :class:`colmax.scoring.PackedDocuments` on the packed corpus.
* ``colmax_packed_f16copy``: the same with ``copy_dtype="float16"`` (half the memory).
* ``pylate``: PyLate's ``colbert_scores`` on the same padded batch, run by
  ``_pylate_worker.py`` in the peers' virtual environment (skipped when that is missing).
* ``maxsim_cpu``: Mixedbread's ``maxsim-cpu`` (PyPI; libxsmm + Rust), its
  ``maxsim_scores_variable`` on the ragged documents. Included only at dimensions where a
  correctness probe (run in a child process: it can crash) matches the float64 reference:
  maxsim-cpu 0.1.0 is correct at dim 128 and crashes (``maxsim_scores_variable``) or
  returns garbage (``maxsim_scores``) at dim 384 on an AVX512 host.
* ``colmax_top10_<precision>``: :meth:`PackedDocuments.top_k` with ``k=10``, the flat
  index's search path, for each first-pass precision (``float32``, ``bfloat16``, ``int8``):
  exact results on every path, speed depends on the CPU (``colmax doctor``).

The machine's hardware summary (:mod:`colmax.hardware`) is printed first.

Runs are interleaved (every repeat runs every method once, in a rotated order) and medians
are reported, so a noisy neighbour hurts every method alike.

Usage:
    .venv/bin/python benchmarks/bench_maxsim.py                 # 1M tokens, dim 128 and 384
    .venv/bin/python benchmarks/bench_maxsim.py --tokens 200000 --dims 128 --repeats 3
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _jsonl_process import JsonLineProcess, rotated

from colmax.hardware import detect
from colmax.scoring import PackedDocuments, maxsim

__all__ = ["main"]

ROOT = Path(__file__).resolve().parents[1]
CHUNK_ELEMENTS = 1 << 26  # similarities per einsum chunk for the padded baselines (256 MiB)


def cpu_model() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or "unknown"
    lines = [ln.split(":", 1)[1].strip() for ln in out.splitlines() if ln.startswith("Model name")]
    return lines[0] if lines else "unknown"


def make_corpus(n_tokens: int, dim: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Unit vectors stored float16; documents of 30-300 tokens."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(30, 301, size=n_tokens // 30 + 1)
    lengths = lengths[: int(np.searchsorted(np.cumsum(lengths), n_tokens)) + 1]
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    tokens = np.empty((int(offsets[-1]), dim), dtype=np.float16)
    for a in range(0, tokens.shape[0], 1 << 18):
        block = rng.standard_normal((min(1 << 18, tokens.shape[0] - a), dim), dtype=np.float32)
        tokens[a : a + block.shape[0]] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return tokens, offsets


def make_queries(n: int, dim: int, seed: int) -> np.ndarray:
    q = np.random.default_rng(seed).standard_normal((n, 32, dim), dtype=np.float32)
    return q / np.linalg.norm(q, axis=-1, keepdims=True)


def pad_corpus(tokens: np.ndarray, offsets: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = np.diff(offsets)
    docs = torch.zeros((lengths.size, int(lengths.max()), tokens.shape[1]), dtype=torch.float32)
    mask = torch.zeros(docs.shape[:2], dtype=torch.bool)
    for i, (a, b) in enumerate(itertools.pairwise(offsets)):
        docs[i, : b - a] = torch.from_numpy(tokens[a:b].astype(np.float32))
        mask[i, : b - a] = True
    return docs, mask


def naive_fp32(q: torch.Tensor, docs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    step = max(1, CHUNK_ELEMENTS // (q.shape[0] * q.shape[1] * docs.shape[1]))
    parts = []
    for a in range(0, docs.shape[0], step):
        sim = torch.einsum("qsh,bth->qbst", q, docs[a : a + step])
        sim.masked_fill_(~mask[a : a + step, None, :], float("-inf"))
        parts.append(sim.max(dim=-1).values.sum(dim=-1))
    return torch.cat(parts, dim=1)


def _top10(packed: PackedDocuments, qt: torch.Tensor) -> Callable[[int], float]:
    return lambda b: timed(lambda: packed.top_k(list(qt[:b]), 10))


def _maxsim_cpu(ragged: list[np.ndarray], queries: np.ndarray) -> Callable[[int], float]:
    import maxsim_cpu  # only where installed and its probe passed

    def run(batch: int) -> float:  # one query per call: its API takes one query
        return timed(
            lambda: [maxsim_cpu.maxsim_scores_variable(q, ragged) for q in queries[:batch]]
        )

    return run


_PROBE = """
import sys, numpy as np, maxsim_cpu
dim = int(sys.argv[1]); rng = np.random.default_rng(0)
docs = [rng.standard_normal((int(n), dim)).astype(np.float32) for n in rng.integers(1, 80, 60)]
docs = [d / np.linalg.norm(d, axis=1, keepdims=True) for d in docs]
q = rng.standard_normal((32, dim)).astype(np.float32)
q /= np.linalg.norm(q, axis=1, keepdims=True)
ref = np.array([(q.astype(np.float64) @ d.T.astype(np.float64)).max(1).sum() for d in docs])
got = np.asarray(maxsim_cpu.maxsim_scores_variable(q, docs), dtype=np.float64)
print(float(np.abs(got - ref).max()))
"""


def maxsim_cpu_is_correct(dim: int) -> bool:
    """maxsim-cpu's scores against float64 on random data, in a child process (it can crash)."""
    try:
        run = subprocess.run(
            [sys.executable, "-c", _PROBE, str(dim)], capture_output=True, text=True, timeout=300
        )
    except subprocess.TimeoutExpired:
        return False
    lines = run.stdout.strip().splitlines()
    if run.returncode != 0 or not lines:
        print(f"maxsim_cpu probe at dim {dim}: exit code {run.returncode}", flush=True)
        return False
    err = float(lines[-1])
    print(f"maxsim_cpu probe at dim {dim}: max |score - float64| = {err:.1e}", flush=True)
    return err < 1e-4


class PylateWorker(JsonLineProcess):
    """PyLate's colbert_scores in the peers' venv, driven over a pipe."""

    def __init__(self, python: Path, folder: str) -> None:
        worker = Path(__file__).with_name("_pylate_worker.py")
        argv = [python, worker, folder, str(CHUNK_ELEMENTS)]
        super().__init__("the PyLate worker", argv, quiet=False)

    def run(self, batch: int, save: str | None = None) -> float:
        return float(self.ask(batch=batch, save=save)["seconds"])

    def close(self) -> None:  # type: ignore[override]
        super().close(timeout=60)


def timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def bench_dim(args: argparse.Namespace, dim: int, peers: Path | None) -> list[dict]:
    tokens, offsets = make_corpus(args.tokens, dim, seed=dim)
    queries = make_queries(max(args.batches), dim, seed=dim + 1)
    n_tok = tokens.shape[0]
    print(f"\n## dim {dim}: {n_tok:,} tokens in {offsets.size - 1:,} documents", flush=True)
    start = time.perf_counter()
    packed = PackedDocuments.from_arrays(tokens, offsets)
    print(
        f"PackedDocuments.from_arrays: {time.perf_counter() - start:.2f} s, "
        f"{packed.nbytes / 2**20:.0f} MiB (fp16 storage {tokens.nbytes / 2**20:.0f} MiB)"
    )
    packed16 = PackedDocuments.from_arrays(tokens, offsets, copy_dtype="float16")
    docs, mask = pad_corpus(tokens, offsets)
    qt = torch.from_numpy(queries)
    methods: dict[str, Callable[[int], float]] = {
        "naive_fp32": lambda b: timed(lambda: naive_fp32(qt[:b], docs, mask)),
        "colmax_maxsim": lambda b: timed(lambda: maxsim(qt[:b], docs, d_mask=mask)),
        "colmax_packed": lambda b: timed(lambda: packed.score(list(qt[:b]))),
        "colmax_packed_f16copy": lambda b: timed(lambda: packed16.score(list(qt[:b]))),
    }
    ref = packed.score(list(qt[:4]))
    for precision in args.precisions:
        top = PackedDocuments.from_arrays(tokens, offsets, compute_dtype=precision)
        methods[f"colmax_top10_{precision}"] = _top10(top, qt)
        same = sum(
            set(t.ids[:10].tolist()) == set(torch.topk(r, 10).indices.tolist())
            for t, r in zip(top.top_k(list(qt[:4]), 10), ref)
        )
        print(f"colmax_top10_{precision}: same top-10 set as float32 on {same}/{len(ref)} queries")
    if not args.no_maxsim_cpu:
        if maxsim_cpu_is_correct(dim):
            ragged = [
                np.ascontiguousarray(tokens[a:b], dtype=np.float32)
                for a, b in itertools.pairwise(offsets)
            ]
            methods["maxsim_cpu"] = _maxsim_cpu(ragged, queries)
            import maxsim_cpu

            got = np.asarray(maxsim_cpu.maxsim_scores_variable(queries[0], ragged))
            print(
                f"maxsim_cpu: max |score - colmax_packed| {np.abs(got - ref[0].numpy()).max():.1e}"
            )
        else:
            print(f"maxsim_cpu: excluded at dim {dim} (its probe crashed or disagreed)", flush=True)
    with tempfile.TemporaryDirectory() as folder:
        worker = None
        if peers is not None:
            np.save(f"{folder}/tokens.npy", tokens)
            np.save(f"{folder}/offsets.npy", offsets)
            np.save(f"{folder}/queries.npy", queries)
            worker = PylateWorker(peers, folder)
            methods["pylate"] = worker.run
            check_agreement(qt, packed, docs, mask, worker, folder)
        else:
            check_agreement(qt, packed, docs, mask, None, folder)
        try:
            rows = interleaved(methods, args, n_tok, dim)
        finally:
            if worker is not None:
                worker.close()
    return rows


def check_agreement(
    qt: torch.Tensor,
    packed: PackedDocuments,
    docs: torch.Tensor,
    mask: torch.Tensor,
    worker: PylateWorker | None,
    folder: str,
) -> None:
    """Every method must return the same scores before its speed means anything."""
    q = qt[:4]
    ref = packed.score(list(q))
    diffs = {
        "naive_fp32": (naive_fp32(q, docs, mask) - ref).abs().max().item(),
        "colmax_maxsim": (maxsim(q, docs, d_mask=mask) - ref).abs().max().item(),
    }
    if worker is not None:
        worker.run(4, save=f"{folder}/pylate.npy")
        diffs["pylate"] = float(np.abs(np.load(f"{folder}/pylate.npy") - ref.numpy()).max())
    print(
        "max |score - colmax_packed| on 4 queries: "
        + ", ".join(f"{k} {v:.1e}" for k, v in diffs.items()),
        flush=True,
    )


def interleaved(
    methods: dict[str, Callable[[int], float]], args: argparse.Namespace, n_tok: int, dim: int
) -> list[dict]:
    names = list(methods)
    for name in names:  # warm-up: allocators, thread pools, plan caches
        methods[name](1)
    samples: dict[tuple[str, int], list[float]] = {(n, b): [] for n in names for b in args.batches}
    for rep in range(args.repeats):
        order = rotated(names, rep)
        for batch in args.batches:
            for name in order:
                seconds = methods[name](batch)
                samples[name, batch].append(seconds * 1e3 / batch / (n_tok / 1e6))
        print(f"  repeat {rep + 1}/{args.repeats} done", flush=True)
    rows = []
    for batch in args.batches:
        base = statistics.median(samples["naive_fp32", batch])
        for name in names:
            values = samples[name, batch]
            med = statistics.median(values)
            rows.append(
                {
                    "dim": dim,
                    "batch": batch,
                    "method": name,
                    "median": med,
                    "min": min(values),
                    "max": max(values),
                    "vs_naive": base / med,
                }
            )
    return rows


def print_table(rows: list[dict]) -> None:
    print(
        "\n| dim | queries/call | method | median ms/query/M tokens | min..max | speed-up vs naive fp32 |"
    )
    print("|---:|---:|---|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['dim']} | {r['batch']} | {r['method']} | {r['median']:.1f} | "
            f"{r['min']:.1f}..{r['max']:.1f} | {r['vs_naive']:.2f}x |"
        )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=int, default=1_000_000)
    parser.add_argument("--dims", type=int, nargs="+", default=[128, 384])
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--peers-python", type=Path, default=ROOT / ".venv-peers/bin/python")
    parser.add_argument("--no-pylate", action="store_true")
    parser.add_argument("--no-maxsim-cpu", action="store_true")
    parser.add_argument(
        "--precisions",
        nargs="*",
        default=["float32", "bfloat16", "int8"],
        help="first-pass precisions of the colmax_top10 rows",
    )
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args(argv)
    peers = None if args.no_pylate or not args.peers_python.exists() else args.peers_python
    print(detect().summary())
    print(
        f"CPU: {cpu_model()}; torch {torch.__version__}, {torch.get_num_threads()} threads, "
        f"capability {torch.backends.cpu.get_cpu_capability()}; "
        f"BLAS: {'MKL' if torch.backends.mkl.is_available() else 'other'}; "
        f"OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE', '(unset)')}"
    )
    print(f"PyLate: {'via ' + str(peers) if peers else 'not available, skipped'}")
    print(f"load average before: {os.getloadavg()[0]:.2f} (other processes share these cores)")
    rows = [row for dim in args.dims for row in bench_dim(args, dim, peers)]
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    print_table(rows)
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
