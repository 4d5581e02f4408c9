"""Compressed-index benchmark: colmax plaid against exact search and the PLAID / WARP engines.

Every method runs in its own worker process over the same cached token vectors
(``vectors_cache.py``) and answers the same queries, one query per call:

=============  ===================================  ==================================
key            what                                 worker (virtual environment)
=============  ===================================  ==================================
plaid          colmax plaid (2 bits by default)     ``_colmax_worker.py`` (.venv)
flat           colmax flat, exact                   ``_colmax_worker.py`` (.venv)
warp           xtr-warp-rs 2.1 (WARP)               ``_warp_peer_worker.py`` (.venv-warp)
fastplaid      fast-plaid 1.7 (LightOn)             ``_warp_peer_worker.py`` (.venv-warp)
pylate-plaid   PyLate's PLAID (colbert-ai)          ``_plaid_peer_worker.py`` (.venv-peers)
voyager        PyLate's Voyager (HNSW)              ``_plaid_peer_worker.py`` (.venv-peers)
=============  ===================================  ==================================

For each method: build seconds (and CPU seconds), bytes per token, peak RSS of the build and of
the searching process, Recall@10 of the exact top 10, nDCG@10, and p50/p95 latency at each
``--threads`` count, at the method's defaults and at a setting tuned to Recall@10 >= 0.95 (the
fastest setting of its sweep that reaches it, else its most accurate one). Timed runs rotate
which method goes first on every query, so the shared machine's load hits all alike.
``--contention`` then times the tuned settings with and without one busy-loop process beside
them (alternating blocks) and reports the ratio of p50s.

Commands (docs/benchmarks.md quotes their output)::

    bash scripts/make_warp_env.sh                         # .venv-warp, once
    .venv/bin/python benchmarks/bench_plaid.py scifact --peers warp,fastplaid --contention
    .venv/bin/python benchmarks/bench_plaid.py scifact --model /path/to/dim128-checkpoint \
        --peers warp,fastplaid

The 25 M-token run (synthetic documents, ``bench_plaid_synthetic.py``): colmax plaid alone,
exact truth over 16 parts of the corpus, then 10% more documents added without re-training::

    .venv/bin/python benchmarks/bench_plaid_synthetic.py 25000000 --increment 0.1
    .venv/bin/python benchmarks/bench_plaid.py scifact-x25M --no-flat --queries 100 \
        --truth-parts 16 --plaid-sweep 8/1024/256,16/2048/256
    .venv/bin/python benchmarks/bench_plaid.py scifact-x25M --no-flat --queries 100 --increment

Indexes are built once and reused from ``<cache>/plaid/`` (``--rebuild`` forces it); a report
is written there as JSON and printed as Markdown.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import itertools
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# isort: off
import colmax  # first: the thread policy applies before torch loads (truth is computed here)

# isort: on
import numpy as np
import torch

from colmax.evaluation import score_run
from colmax.indexes.flat import FlatIndex
from colmax.store.segments import Segment

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _jsonl_process import JsonLineProcess, rotated
from vectors_cache import CACHE, REPO, CachedVectors, load_vectors

OUT = CACHE / "plaid"
HERE = Path(__file__).resolve().parent
NONE = np.zeros(0, dtype=np.int64)
TARGET = 0.95
BUSY_LOOP = "while True:\n    pass\n"


# ---------------------------------------------------------------------------- methods
@dataclass
class Spec:
    """How to run one method: its worker, build options and search settings to sweep."""

    key: str
    label: str
    python: Path
    worker: str
    method: str
    build: dict[str, Any] = field(default_factory=dict)
    sweep: list[dict[str, Any]] = field(default_factory=list)  # {} (the defaults) first


def _plaid_points(text: str | None) -> list[tuple[int, int, int]]:
    """``--plaid-sweep`` ("8/1024/256,16/2048/512") as (nprobe, ndocs, nfinal) triples; the
    default list suits corpora of 1 to 5 M tokens."""
    if text:
        return [tuple(int(v) for v in point.split("/")) for point in text.split(",")]  # type: ignore[misc]
    return [
        (2, 128, 32),
        (4, 128, 32),
        (4, 256, 64),
        (8, 256, 64),
        (8, 512, 64),
        (8, 1024, 128),
        (16, 1024, 256),
    ]


def specs(args: argparse.Namespace, dim: int) -> dict[str, Spec]:
    venv, warp, peers = REPO / ".venv", REPO / ".venv-warp", REPO / ".venv-peers"
    # xtr-warp-rs 2.1 trains its residual buckets with one torch.quantile over the whole
    # (sample tokens x dim) residual matrix, which torch refuses above 2**24 elements; at its
    # default sample (1 M tokens) every build of more than ~44k (dim 384) or ~131k (dim 128)
    # tokens panics after k-means ("quantile() input tensor is too large"). The one
    # non-default build option: a sample that fits.
    warp_build = {"codec_sample_max_tokens": (1 << 24) // dim - 1}
    plaid_build = {"nbits": args.nbits}
    return {
        "plaid": Spec(
            "plaid",
            f"colmax plaid ({args.nbits}-bit)",
            venv / "bin" / "python",
            "_colmax_worker.py",
            "plaid",
            plaid_build,
            [
                {},
                *(
                    {"nprobe": p, "ndocs": d, "nfinal": f}
                    for p, d, f in _plaid_points(args.plaid_sweep)
                ),
            ],
        ),
        "flat": Spec(
            "flat",
            "colmax flat (exact)",
            venv / "bin" / "python",
            "_colmax_worker.py",
            "flat",
            {},
            [{}],
        ),
        "warp": Spec(
            "warp",
            "xtr-warp-rs (WARP)",
            warp / "bin" / "python",
            "_warp_peer_worker.py",
            "warp",
            warp_build,
            [
                {},
                *({"nprobe": p} for p in (8, 16, 32)),
                *(
                    {"nprobe": p, "t_prime": t, "centroid_score_threshold": 0.0}
                    for p, t in (
                        (16, 20_000),
                        (32, 50_000),
                        (64, 100_000),
                        (128, 200_000),
                        (256, 400_000),
                        (512, 800_000),  # the first to reach Recall@10 0.95 on SciFact dim 384
                    )
                ),
            ],
        ),
        "fastplaid": Spec(
            "fastplaid",
            "fast-plaid",
            warp / "bin" / "python",
            "_warp_peer_worker.py",
            "fastplaid",
            {},
            [
                {},
                *(
                    {"n_ivf_probe": p, "n_full_scores": s}
                    for p, s in ((4, 1024), (8, 1024), (8, 2048), (16, 4096), (32, 8192))
                ),
            ],
        ),
        "pylate-plaid": Spec(
            "pylate-plaid",
            "PyLate PLAID (colbert-ai)",
            peers / "bin" / "python",
            "_plaid_peer_worker.py",
            "plaid",
            {},
            [{}],
        ),
        "voyager": Spec(
            "voyager",
            "PyLate Voyager",
            peers / "bin" / "python",
            "_plaid_peer_worker.py",
            "voyager",
            {},
            [{}],
        ),
    }


class Worker:
    """A method's worker process: built first (``--build-only``), then serving queries."""

    def __init__(self, spec: Spec, vecs: CachedVectors, rebuild: bool) -> None:
        self.spec = spec
        tag = hashlib.sha1(json.dumps(spec.build, sort_keys=True).encode()).hexdigest()[:8]
        self.root = OUT / f"{spec.key}-{vecs.folder.name}-{tag}"
        if spec.worker == "_plaid_peer_worker.py":
            self.root = OUT / f"{spec.method}-{vecs.folder.name}"
        if rebuild:
            for record in ("build.json", "stopped.json"):
                (self.root / record).unlink(missing_ok=True)
        self.argv = [spec.python, HERE / spec.worker, spec.method, vecs.folder, self.root]
        if spec.worker != "_plaid_peer_worker.py":
            self.argv.append(json.dumps(spec.build))
        self.root.mkdir(parents=True, exist_ok=True)
        self.proc: JsonLineProcess | None = None

    def build(self, timeout: float | None = None) -> dict[str, float] | None:
        """Build unless built; ``None`` when done, else what a build stopped at ``timeout``
        seconds had spent (its wall and CPU seconds): that method is then left out, and later
        runs reuse this record (``stopped.json``) instead of trying again, unless ``--rebuild``."""
        if (self.root / "build.json").is_file() or self.spec.worker == "_plaid_peer_worker.py":
            return None
        if (self.root / "stopped.json").is_file():
            return dict(json.loads((self.root / "stopped.json").read_text()))
        print(f"building {self.spec.label} ...", flush=True)
        argv = [str(a) for a in [*self.argv, "--build-only"]]
        start = time.perf_counter()
        proc = subprocess.Popen(argv, env=_env())
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            cpu = _cpu_seconds_of(proc.pid)
            proc.kill()
            proc.wait()
            stopped = {
                "stopped_after_s": time.perf_counter() - start,
                "cpu_s": cpu,
                "load_avg": os.getloadavg(),
            }
            (self.root / "stopped.json").write_text(json.dumps(stopped))
            print(f"{self.spec.label}: build stopped {json.dumps(stopped)}", flush=True)
            return stopped
        if rc:
            raise subprocess.CalledProcessError(rc, argv)
        return None

    def add_increment(self) -> dict[str, Any]:
        """Add the data set's increment to the built index (once: ``increment.json`` records
        it, and the index keeps it: a later run without ``--increment`` would search the
        larger index)."""
        record = self.root / "increment.json"
        if not record.is_file():
            print(f"adding the increment to {self.spec.label} ...", flush=True)
            argv = [str(a) for a in [*self.argv, "--add-increment"]]
            subprocess.run(argv, env=_env(), check=True)
        return dict(json.loads(record.read_text()))

    def start(self) -> dict[str, Any]:
        self.proc = JsonLineProcess(self.spec.label, self.argv, log=self.root / "worker.log")
        return self.proc.ready

    def ask(self, query: int, threads: int, params: dict[str, Any], k: int = 10) -> dict[str, Any]:
        assert self.proc is not None
        return self.proc.ask(query=query, k=k, threads=threads, params=params)

    def close(self) -> dict[str, Any]:
        last = self.ask(0, 1, {})  # the peak RSS after everything it answered
        assert self.proc is not None
        self.proc.close({"quit": True})
        return last


def _cpu_seconds_of(pid: int) -> float:
    """User + system CPU seconds of a running process and its waited-for children (Linux)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return float("nan")
    ticks = sum(int(f) for f in fields[11:15])  # utime stime cutime cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def _env() -> dict[str, str]:
    # The same OpenMP wait policy for every worker (importing colmax put PASSIVE in this
    # process's environment, which the workers inherit): nobody's idle threads spin while
    # another method's query runs.
    return {**os.environ, "OMP_WAIT_POLICY": "PASSIVE", "TOKENIZERS_PARALLELISM": "false"}


# ---------------------------------------------------------------------------- data, truth
def load(name: str, model: str | None) -> CachedVectors:
    """A vectors_cache entry; ``<dataset>-x<N>M`` names a synthetic extension."""
    if "-x" in name:
        from bench_plaid_synthetic import load_extended

        return load_extended(name)
    return load_vectors(name, model)


def _part_top(
    qs: list[torch.Tensor], tokens: np.ndarray, offsets: np.ndarray, first_key: int
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-100 keys and scores of the queries over one run of documents (keys from
    ``first_key`` on), with colmax's flat index (its two-pass search is exact)."""
    n = len(offsets) - 1
    seg = Segment(
        "seg-00000000-00000000",
        np.asarray(tokens),
        offsets - offsets[0],
        np.arange(first_key, first_key + n, dtype=np.int64),
    )
    flat = FlatIndex(tokens.shape[1]).with_segment(seg, NONE)
    res = [r for s in range(0, len(qs), 16) for r in flat.search(qs[s : s + 16], 100)]
    width = min(100, n)
    return np.stack([r.keys[:width] for r in res]), np.stack([r.scores[:width] for r in res])


def _merge_tops(parts: list[tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    all_keys = np.concatenate([k for k, _ in parts], axis=1)
    all_scores = np.concatenate([s for _, s in parts], axis=1)
    order = np.argsort(-all_scores, axis=1, kind="stable")[:, :100]
    return np.take_along_axis(all_keys, order, 1), np.take_along_axis(all_scores, order, 1)


def _queries(vecs: CachedVectors, qidx: list[int]) -> list[torch.Tensor]:
    return [torch.from_numpy(vecs.query(j).astype(np.float32)) for j in qidx]


def _split_top(
    qs: list[torch.Tensor], tokens: np.ndarray, offsets: np.ndarray, first_key: int, parts: int
) -> tuple[np.ndarray, np.ndarray]:
    """:func:`_part_top` over ``parts`` runs of the documents in turn (bounded memory)."""
    cuts = np.searchsorted(offsets, np.linspace(0, offsets[-1], parts + 1)[1:-1])
    bounds = [0, *cuts.tolist(), len(offsets) - 1]
    tops = []
    for a, b in itertools.pairwise(bounds):
        tops.append(
            _part_top(qs, tokens[offsets[a] : offsets[b]], offsets[a : b + 1], first_key + a)
        )
        print(f"exact truth: documents {first_key + a}..{first_key + b - 1} done", flush=True)
    return _merge_tops(tops)


def exact_truth(
    vecs: CachedVectors, qidx: list[int], n_parts: int
) -> tuple[np.ndarray, np.ndarray]:
    """Exact top-100 of the queries, one part of the corpus at a time (bounded memory)."""
    return _split_top(_queries(vecs, qidx), vecs.doc_tokens, vecs.doc_offsets, 0, n_parts)


def increment_truth(
    vecs: CachedVectors, qidx: list[int], base: tuple[np.ndarray, np.ndarray], n_parts: int
) -> tuple[np.ndarray, np.ndarray]:
    """The exact top-100 over the corpus (``base``: keys, scores) and its increment (keys
    after the corpus's, in parts of the corpus's part size), merged."""
    tokens = np.load(vecs.folder / "increment_tokens.npy", mmap_mode="r")
    offsets = np.load(vecs.folder / "increment_offsets.npy")
    parts = max(1, round(n_parts * offsets[-1] / vecs.doc_offsets[-1]))
    more = _split_top(_queries(vecs, qidx), tokens, offsets, len(vecs.doc_ids), parts)
    return _merge_tops([base, more])


def with_increment(vecs: CachedVectors) -> CachedVectors:
    """``vecs`` whose document ids also name the increment's documents (for nDCG)."""
    more = json.loads((vecs.folder / "increment_ids.json").read_text())
    return dataclasses.replace(vecs, doc_ids=[*vecs.doc_ids, *more])


def recall(truth: np.ndarray, got: list[list[int]], k: int = 10) -> float:
    return float(np.mean([len(set(t[:k].tolist()) & set(g[:k])) / k for t, g in zip(truth, got)]))


def ndcg(vecs: CachedVectors, qidx: list[int], got: list[list[int]]) -> float:
    run = {
        vecs.query_ids[j]: {vecs.doc_ids[d]: float(-r) for r, d in enumerate(ids)}
        for j, ids in zip(qidx, got)
    }
    qrels = {vecs.query_ids[j]: vecs.qrels.get(vecs.query_ids[j], {}) for j in qidx}
    return score_run(qrels, run)["nDCG@10"]


def machine() -> dict[str, Any]:
    flags: list[str] = []
    model = ""
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name"):
                model = line.split(":", 1)[1].strip()
            if line.startswith("Flags"):
                have = set(line.split(":", 1)[1].split())
                flags = [f for f in ("avx512_bf16", "amx_bf16", "avx512_vnni", "avx2") if f in have]
    except OSError:
        pass
    return {
        "cpu": model,
        "flags": flags,
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "wait_policy": colmax.threads.current_policy().wait_policy,
        "load_avg": os.getloadavg(),
    }


def summary(seconds: list[float]) -> dict[str, float]:
    ms = np.asarray(seconds) * 1000
    return {"p50_ms": float(np.median(ms)), "p95_ms": float(np.percentile(ms, 95))}


# ---------------------------------------------------------------------------- phases
def quality(
    worker: Worker, params: dict[str, Any], qidx: list[int], truth: np.ndarray, vecs: CachedVectors
) -> dict[str, Any]:
    """One untimed-order pass over every query at 2 threads: recall, nDCG, mean latency."""
    got, seconds = [], []
    for j in qidx:
        answer = worker.ask(j, 2, params)
        got.append(answer["ids"])
        seconds.append(answer["seconds"])
    return {
        "params": params,
        "recall@10": recall(truth, got),
        "ndcg@10": ndcg(vecs, qidx, got),
        "pass_mean_ms": float(np.mean(seconds) * 1000),
    }


def tuned(points: list[dict[str, Any]]) -> dict[str, Any]:
    """The fastest point reaching the target recall, else the most accurate one."""
    good = [p for p in points if p["recall@10"] >= TARGET]
    if good:
        return min(good, key=lambda p: p["pass_mean_ms"])
    return max(points, key=lambda p: (p["recall@10"], -p["pass_mean_ms"]))


def timed(
    runs: list[tuple[str, Worker, dict[str, Any]]], queries: list[int], threads: int, repeats: int
) -> dict[str, list[float]]:
    """Per run, the median over repeats of each query's seconds; methods rotate per query."""
    per: dict[str, list[list[float]]] = {name: [[] for _ in queries] for name, _, _ in runs}
    for rep in range(repeats):
        for n, j in enumerate(queries):
            for name, worker, params in rotated(runs, rep + n):
                per[name][n].append(worker.ask(j, threads, params)["seconds"])
    return {name: [float(np.median(t)) for t in times] for name, times in per.items()}


def contention(
    runs: list[tuple[str, Worker, dict[str, Any]]],
    queries: list[int],
    threads: int,
    repeats: int,
) -> dict[str, dict[str, float]]:
    """p50 quiet vs with one busy-loop process beside the workers (alternating blocks)."""
    quiet: dict[str, list[float]] = {name: [] for name, _, _ in runs}
    busy: dict[str, list[float]] = {name: [] for name, _, _ in runs}
    for rep in range(repeats):
        for phase in ("quiet", "busy") if rep % 2 == 0 else ("busy", "quiet"):
            loop = None
            if phase == "busy":
                loop = subprocess.Popen([sys.executable, "-c", BUSY_LOOP])
                time.sleep(0.5)
            try:
                got = timed(runs, queries, threads, 1)
            finally:
                if loop is not None:
                    loop.kill()
                    loop.wait()
            for name, seconds in got.items():
                (busy if phase == "busy" else quiet)[name].extend(seconds)
    out = {}
    for name, _, _ in runs:
        q, b = statistics.median(quiet[name]) * 1000, statistics.median(busy[name]) * 1000
        out[name] = {"quiet_p50_ms": q, "busy_p50_ms": b, "ratio": b / q}
    return out


# ---------------------------------------------------------------------------- main
def run(args: argparse.Namespace) -> dict[str, Any]:
    vecs = load(args.dataset, args.model)
    n_queries = min(args.queries, len(vecs.query_ids))
    qidx = list(range(n_queries))
    report: dict[str, Any] = {
        "dataset": vecs.folder.name,
        "n_docs": len(vecs.doc_ids),
        "n_tokens": int(vecs.doc_offsets[-1]),
        "dim": vecs.dim,
        "queries": n_queries,
        "timed_queries": min(args.timed, n_queries),
        "repeats": args.repeats,
        "threads": args.threads,
        "machine_before": machine(),
        "command": " ".join(sys.argv),
    }
    print(f"{vecs.folder.name}: {report['n_docs']} docs, {report['n_tokens']} tokens", flush=True)
    OUT.mkdir(parents=True, exist_ok=True)
    keys = ["plaid", *(["flat"] if args.flat else []), *[p for p in args.peers.split(",") if p]]
    if args.increment and keys != ["plaid"]:
        raise SystemExit("--increment measures colmax plaid alone: add --no-flat, no --peers")
    all_specs = specs(args, vecs.dim)
    workers = [Worker(all_specs[k], vecs, args.rebuild) for k in keys]
    report["stopped_builds"] = {}
    for w in list(workers):  # one at a time: build times are not shared
        stopped = w.build(args.build_timeout)
        if stopped is not None:
            report["stopped_builds"][w.spec.key] = {"label": w.spec.label, **stopped}
            workers.remove(w)
    if args.build_only:
        return report
    if args.increment:
        report["increment"] = workers[0].add_increment()
    truth_file = OUT / f"truth-{vecs.folder.name}.npz"
    if truth_file.is_file() and not args.rebuild:
        saved = np.load(truth_file)
        truth, scores = saved["keys"][:n_queries], saved["scores"][:n_queries]
    else:
        truth, scores = exact_truth(vecs, qidx, args.truth_parts)
        np.savez(truth_file, keys=truth, scores=scores)
    if len(truth) < n_queries:
        raise SystemExit(f"{truth_file} holds {len(truth)} queries: rerun with --rebuild")
    if args.increment:
        inc_file = OUT / f"truth-{vecs.folder.name}-inc.npz"
        if inc_file.is_file() and not args.rebuild:
            truth = np.load(inc_file)["keys"][:n_queries]
        else:
            truth, scores = increment_truth(vecs, qidx, (truth, scores), args.truth_parts)
            np.savez(inc_file, keys=truth, scores=scores)
        vecs = with_increment(vecs)
    report["truth_ndcg@10"] = ndcg(vecs, qidx, [t[:10].tolist() for t in truth])
    methods: dict[str, Any] = {}
    for w in workers:
        methods[w.spec.key] = {"label": w.spec.label, **w.start()}
        print(w.spec.label, "ready", flush=True)
    for w in workers:  # warm-up (fast-plaid loads lazily)
        for j in qidx[:5]:
            w.ask(j, 2, {})
    for w in workers:
        sweep = w.spec.sweep if args.tune else w.spec.sweep[:1]
        points = [quality(w, params, qidx, truth, vecs) for params in sweep]
        for p in points:
            print(w.spec.label, json.dumps(p), flush=True)
        methods[w.spec.key].update(sweep=points, default=points[0], tuned=tuned(points))
    timed_q = qidx[: args.timed]
    for threads in args.threads:
        for setting in ("default", "tuned"):
            runs = [(w.spec.key, w, methods[w.spec.key][setting]["params"]) for w in workers]
            got = timed(runs, timed_q, threads, args.repeats)
            for key, seconds in got.items():
                methods[key].setdefault("latency", {})[f"{setting}@{threads}"] = summary(seconds)
            print(f"timed {setting} at {threads} threads", flush=True)
    if args.contention:
        report["contention"] = {}
        for threads in args.threads:
            runs = [(w.spec.key, w, methods[w.spec.key]["tuned"]["params"]) for w in workers]
            report["contention"][str(threads)] = contention(
                runs, timed_q[: args.contention_queries], threads, args.contention_repeats
            )
            print(f"contention at {threads} threads done", flush=True)
    for w in workers:
        methods[w.spec.key]["search_peak_rss_mb"] = w.close().get("rss_mb", float("nan"))
        info = methods[w.spec.key]
        info["bytes_per_token"] = info["bytes"] / info["n_tokens"]
    report["methods"] = methods
    report["machine_after"] = machine()
    return report


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "| method | setting | build s (CPU s) | B/token | build / search peak RSS MB | "
        + " | ".join(f"p50 / p95 ms @{t}" for t in report["threads"])
        + " | Recall@10 | nDCG@10 |",
        "|---|---|---:|---:|---:|" + "---:|" * len(report["threads"]) + "---:|---:|",
    ]
    for info in report["methods"].values():
        for setting in ("default", "tuned"):
            point = info[setting]
            if setting == "tuned" and point["params"] == info["default"]["params"]:
                continue
            lat = " | ".join(
                "{p50_ms:.1f} / {p95_ms:.1f}".format(**info["latency"][f"{setting}@{t}"])
                for t in report["threads"]
            )
            cpu = info.get("build_cpu_seconds")
            build = f"{info['build_seconds']:.0f}" + (f" ({cpu:.0f})" if cpu else "")
            params = json.dumps(point["params"]) if point["params"] else "defaults"
            lines.append(
                f"| {info['label']} | {params} | {build} | {info['bytes_per_token']:.1f} | "
                f"{info.get('build_peak_rss_mb', float('nan')):.0f} / "
                f"{info['search_peak_rss_mb']:.0f} | {lat} | {point['recall@10']:.3f} | "
                f"{point['ndcg@10']:.4f} |"
            )
    for info in report.get("stopped_builds", {}).values():
        lines.append(
            f"| {info['label']} | build stopped after {info['stopped_after_s']:.0f} s "
            f"({info['cpu_s']:.0f} CPU s) | | | | " + "| " * len(report["threads"]) + "| |"
        )
    if report.get("contention"):
        lines += ["", "| method (tuned) | threads | quiet p50 ms | busy p50 ms | ratio |"]
        lines.append("|---|---:|---:|---:|---:|")
        for threads, rows in report["contention"].items():
            for key, row in rows.items():
                label = report["methods"][key]["label"]
                lines.append(
                    f"| {label} | {threads} | {row['quiet_p50_ms']:.1f} | "
                    f"{row['busy_p50_ms']:.1f} | {row['ratio']:.2f} |"
                )
    inc = report.get("increment")
    if inc:
        drift = inc["drift_after"] or {}
        lines += [
            "",
            f"Increment: {inc['docs']} documents ({inc['tokens']} tokens) added in "
            f"{inc['add_seconds']:.0f} s ({inc['add_cpu_seconds']:.0f} CPU s), peak RSS "
            f"{inc['add_peak_rss_mb']:.0f} MB, no re-training; drift after: residual ratio "
            f"{drift.get('residual_ratio')}, growth {drift.get('growth')}x: {drift.get('advice')}",
        ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset")
    parser.add_argument("--model", default=None, help="encoder of the cached vectors")
    parser.add_argument(
        "--peers", default="", help="comma list: warp,fastplaid,pylate-plaid,voyager"
    )
    parser.add_argument("--no-flat", dest="flat", action="store_false")
    parser.add_argument("--queries", type=int, default=300, help="queries for quality")
    parser.add_argument("--timed", type=int, default=60, help="queries timed (the first ones)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=lambda s: [int(t) for t in s.split(",")], default=[1, 2])
    parser.add_argument("--nbits", type=int, default=2)
    parser.add_argument("--no-tune", dest="tune", action="store_false")
    parser.add_argument("--contention", action="store_true")
    parser.add_argument("--contention-queries", type=int, default=30)
    parser.add_argument("--contention-repeats", type=int, default=4)
    parser.add_argument("--truth-parts", type=int, default=1)
    parser.add_argument(
        "--plaid-sweep",
        default=None,
        help="colmax plaid's sweep points, nprobe/ndocs/nfinal comma list (defaults first)",
    )
    parser.add_argument(
        "--increment",
        action="store_true",
        help="add the data set's increment (bench_plaid_synthetic.py --increment) to the "
        "built plaid index, no re-training, then measure against the exact top 10 of both",
    )
    parser.add_argument("--rebuild", action="store_true")
    parser.add_argument(
        "--build-timeout",
        type=float,
        default=None,
        help="seconds; a build still running then is stopped and its method left out",
    )
    parser.add_argument("--build-only", action="store_true", help="build the indexes and stop")
    args = parser.parse_args()
    report = run(args)
    if args.build_only:
        return
    # One report per kind of run: a --contention or --increment run does not overwrite the
    # full comparison's report.
    kind = "".join(f"-{k}" for k in ("increment", "contention") if getattr(args, k))
    path = OUT / f"report-{report['dataset']}-n{args.nbits}{kind}.json"
    path.write_text(json.dumps(report, indent=1))
    print(markdown(report))
    print(f"written {path}")


if __name__ == "__main__":
    main()
