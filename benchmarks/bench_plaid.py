"""Compressed index benchmark: colmax plaid against exact search and PyLate's PLAID / Voyager.

All methods index the same cached token vectors (``vectors_cache.py``: raw MiniLM, dim 384) and
answer the same queries, one query per call, in an interleaved order (every repeat rotates which
method goes first) so that the shared CPU's load hits all of them alike. Reported per method:
build seconds, bytes per token on disk, p50/p95 latency, Recall@10 of the exact top-10 and
nDCG@10 against the qrels; and for colmax plaid a latency/recall curve over nprobe/ndocs/nfinal.

Commands (the section "Compressed index (plaid)" of docs/benchmarks.md quotes their output)::

    .venv/bin/python benchmarks/bench_plaid.py scifact --peers plaid,voyager
    .venv/bin/python benchmarks/bench_plaid_synthetic.py 5000000        # makes scifact-x5M
    .venv/bin/python benchmarks/bench_plaid.py scifact-x5M --queries 100 --flat-parts 4

The peers run in ``.venv-peers`` through ``_plaid_peer_worker.py``; their indexes and colmax's
plaid index are built once and reused from ``.cache/bench/plaid/`` (``--rebuild`` forces it).
Results are written as JSON under ``.cache/bench/plaid/`` and printed as Markdown; the
figures of docs/benchmarks.md (``docs/img/plaid-<dataset>-*.svg``) are drawn from them
(``plots.py``).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from colmax.evaluation import score_run
from colmax.indexes.flat import FlatIndex
from colmax.indexes.plaid import CodedSegment, PlaidIndex, PlaidSettings, ResidualCodec
from colmax.store.segments import Segment

sys.path.insert(0, str(Path(__file__).resolve().parent))
from plots import plaid_figures
from vectors_cache import CACHE, REPO, CachedVectors, load_vectors

OUT = CACHE / "plaid"
PEERS_PYTHON = REPO / ".venv-peers" / "bin" / "python"
NONE = np.zeros(0, dtype=np.int64)
CURVE = [  # (nprobe, ndocs, nfinal): from narrow to wide
    (2, 256, 64),
    (4, 256, 64),
    (4, 512, 128),
    (8, 512, 128),
    (8, 1024, 256),
    (16, 1024, 256),
    (16, 2048, 512),
    (32, 4096, 1024),
]


# ---------------------------------------------------------------------------- data
def load(name: str) -> CachedVectors:
    """A vectors_cache entry; ``<dataset>-x<N>`` names a synthetic extension made by
    ``bench_plaid_synthetic.py`` (its qrels are the base data set's)."""
    if "-x" in name:
        from bench_plaid_synthetic import load_extended

        return load_extended(name)
    return load_vectors(name)


def parts(vecs: CachedVectors, n_parts: int) -> list[Segment]:
    """The corpus as ``n_parts`` exact segments (whole documents), memory-mapped."""
    offsets = vecs.doc_offsets
    bounds = np.searchsorted(offsets, np.linspace(0, offsets[-1], n_parts + 1)[1:-1])
    cuts = [0, *bounds.tolist(), len(offsets) - 1]
    out = []
    for i, (a, b) in enumerate(itertools.pairwise(cuts)):
        offs = offsets[a : b + 1] - offsets[a]
        tokens = vecs.doc_tokens[offsets[a] : offsets[b]]
        out.append(Segment(f"seg-{i:08d}-00000000", tokens, offs, np.arange(a, b, dtype=np.int64)))
    return out


def queries_of(vecs: CachedVectors) -> list[torch.Tensor]:
    return [torch.from_numpy(vecs.query(j).astype(np.float32)) for j in range(len(vecs.query_ids))]


# ---------------------------------------------------------------------------- colmax plaid
def plaid_index(
    vecs: CachedVectors, settings: PlaidSettings, tag: str, rebuild: bool
) -> tuple[PlaidIndex, dict]:
    """Build (or reuse) a colmax plaid index folder and open it memory-mapped."""
    folder = OUT / f"colmax-{tag}"
    record = folder / "build.json"
    if rebuild or not record.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        segs = parts(vecs, 1)
        index = PlaidIndex(vecs.dim, settings).with_segment(segs[0], NONE)
        start, cpu = time.perf_counter(), time.process_time()
        codec = index.train_codec(1)
        trained = time.perf_counter()
        coded = index.recode(2, codec)
        assert coded is not None
        coded_at = time.perf_counter()
        codec.write(folder)
        coded.write(folder)
        info = {
            "train_seconds": trained - start,
            "encode_seconds": coded_at - trained,
            "build_seconds": time.perf_counter() - start,
            "build_cpu_seconds": time.process_time() - cpu,
            "codec": codec.name,
            "segment": coded.name,
            "n_docs": coded.n_docs,
            "n_tokens": coded.n_tokens,
            "centroids": codec.n_centroids,
            "settings": settings.to_json(),
        }
        record.write_text(json.dumps(info, indent=1))
    info = json.loads(record.read_text())
    codec = ResidualCodec.read(folder, info["codec"], vecs.dim)
    seg = CodedSegment.read(folder, info["segment"], info["n_docs"], info["n_tokens"], codec)
    files = [*folder.glob("codecs/*.npy"), *folder.glob("segments/*.npy")]
    info["bytes"] = sum(f.stat().st_size for f in files)
    info["payload_bytes_per_token"] = (seg.codes.nbytes + seg.residuals.nbytes) / seg.n_tokens
    keys = np.arange(info["n_docs"], dtype=np.int64)
    start = time.perf_counter()
    index = PlaidIndex(vecs.dim, settings).with_codec(codec, [seg], keys)
    info["open_seconds"] = time.perf_counter() - start
    return index, info


# ---------------------------------------------------------------------------- peers
class Peer:
    """A peer index in its worker process."""

    def __init__(self, method: str, vecs: CachedVectors, rebuild: bool) -> None:
        root = OUT / f"{method}-{vecs.folder.name}"
        if rebuild and (root / "build.json").is_file():
            (root / "build.json").unlink()
        env = {**os.environ, "TOKENIZERS_PARALLELISM": "false"}
        self.name = {"plaid": "PyLate PLAID (colbert-ai)", "voyager": "PyLate Voyager"}[method]
        self.proc = subprocess.Popen(
            [
                str(PEERS_PYTHON),
                str(Path(__file__).parent / "_plaid_peer_worker.py"),
                method,
                str(vecs.folder),
                str(root),
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.info: dict[str, Any] = {}

    def wait_ready(self) -> dict[str, Any]:
        line = self.proc.stdout.readline()  # type: ignore[union-attr]
        if not line:
            raise RuntimeError(f"{self.name} worker exited during the build")
        self.info = json.loads(line)
        return self.info

    def search(self, j: int, k: int) -> tuple[float, np.ndarray]:
        self.proc.stdin.write(json.dumps({"query": j, "k": k}) + "\n")  # type: ignore[union-attr]
        self.proc.stdin.flush()  # type: ignore[union-attr]
        answer = json.loads(self.proc.stdout.readline())  # type: ignore[union-attr]
        return answer["seconds"], np.asarray(answer["ids"], dtype=np.int64)

    def close(self) -> None:
        self.proc.stdin.close()  # type: ignore[union-attr]
        self.proc.wait()


# ---------------------------------------------------------------------------- measuring
def recall(truth: np.ndarray, got: list[np.ndarray], k: int = 10) -> float:
    return float(
        np.mean([len(set(t[:k].tolist()) & set(g[:k].tolist())) / k for t, g in zip(truth, got)])
    )


def ndcg(
    vecs: CachedVectors,
    qidx: list[int],
    got: list[np.ndarray],
    scores: list[np.ndarray] | None = None,
) -> float:
    run = {}
    for n, (j, keys) in enumerate(zip(qidx, got)):
        ranked = scores[n] if scores is not None else -np.arange(len(keys), dtype=np.float64)
        run[vecs.query_ids[j]] = {vecs.doc_ids[int(d)]: float(s) for d, s in zip(keys, ranked)}
    qrels = {vecs.query_ids[j]: vecs.qrels.get(vecs.query_ids[j], {}) for j in qidx}
    return score_run(qrels, run)["nDCG@10"]


def exact_truth(
    vecs: CachedVectors, qs: list[torch.Tensor], n_parts: int
) -> tuple[np.ndarray, np.ndarray, float]:
    """Exact top-100 of every query (batched), one part at a time (bounded memory)."""
    keys, scores = [], []
    prep = 0.0
    for seg in parts(vecs, n_parts):
        start = time.perf_counter()
        flat = FlatIndex(vecs.dim).with_segment(seg, NONE)
        prep += time.perf_counter() - start
        res = []
        for a in range(0, len(qs), 16):
            res += flat.search(qs[a : a + 16], 100)
        keys.append(np.stack([r.keys for r in res]))
        scores.append(np.stack([r.scores for r in res]))
        del flat
    all_keys, all_scores = np.concatenate(keys, axis=1), np.concatenate(scores, axis=1)
    order = np.argsort(-all_scores, axis=1, kind="stable")[:, :100]
    return np.take_along_axis(all_keys, order, 1), np.take_along_axis(all_scores, order, 1), prep


def timed(fn: Any, *args: Any) -> tuple[float, Any]:
    start = time.perf_counter()
    out = fn(*args)
    return time.perf_counter() - start, out


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name"):
                model = line.split(":", 1)[1].strip()
    except OSError:
        pass
    return {
        "cpu": model,
        "cpus": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "load_avg": os.getloadavg(),
    }


def summary(seconds: list[float]) -> dict[str, float]:
    ms = np.asarray(seconds) * 1000
    return {
        "p50_ms": float(np.median(ms)),
        "p95_ms": float(np.percentile(ms, 95)),
        "mean_ms": float(ms.mean()),
    }


# ---------------------------------------------------------------------------- main
def run(args: argparse.Namespace) -> dict[str, Any]:
    vecs = load(args.dataset)
    qs = queries_of(vecs)
    qidx = list(range(min(args.queries, len(qs))))
    report: dict[str, Any] = {
        "dataset": args.dataset,
        "n_docs": len(vecs.doc_ids),
        "n_tokens": int(vecs.doc_offsets[-1]),
        "dim": vecs.dim,
        "queries": len(qidx),
        "timed_queries": min(args.timed, len(qidx)),
        "repeats": args.repeats,
        "machine_before": machine(),
        "command": " ".join(sys.argv),
    }
    print(
        f"{args.dataset}: {report['n_docs']} docs, {report['n_tokens']} tokens, {len(qidx)} queries",
        flush=True,
    )
    truth_file = OUT / f"truth-{args.dataset}.npz"
    if truth_file.is_file() and not args.rebuild:
        saved = np.load(truth_file)
        truth, truth_scores = saved["keys"], saved["scores"]
    else:
        truth, truth_scores, _ = exact_truth(vecs, [qs[j] for j in qidx], args.flat_parts)
        OUT.mkdir(parents=True, exist_ok=True)
        np.savez(truth_file, keys=truth, scores=truth_scores)
    truth, truth_scores = truth[: len(qidx)], truth_scores[: len(qidx)]
    settings = PlaidSettings(
        nbits=args.nbits,
        centroid_factor=args.centroid_factor,
        kmeans_iters=args.kmeans_iters,
        train_tokens=1,
    )
    tag = f"{args.dataset}-n{args.nbits}-f{args.centroid_factor:g}-i{args.kmeans_iters}"
    plaid, plaid_info = plaid_index(vecs, settings, tag, args.rebuild)
    print("colmax plaid:", json.dumps(plaid_info), flush=True)
    peers = []
    for method in [m for m in args.peers.split(",") if m]:
        peers.append(Peer(method, vecs, args.rebuild))  # one build at a time: fair build times
        print(peers[-1].name, json.dumps(peers[-1].wait_ready()), flush=True)
    flats = None
    if args.flat_parts == 1:
        start = time.perf_counter()
        flats = [FlatIndex(vecs.dim).with_segment(parts(vecs, 1)[0], NONE)]
        report["flat_prepare_seconds"] = time.perf_counter() - start
    methods: dict[str, Any] = {"colmax plaid": lambda j: plaid.search([qs[j]], 10)[0].keys}
    if flats is not None:
        methods["colmax flat (exact)"] = lambda j: flats[0].search([qs[j]], 10)[0].keys
    for p in peers:
        methods[p.name] = (lambda peer: lambda j: peer.search(j, 10))(p)
    names = list(methods)
    # Quality: every method once over all queries (untimed order).
    results: dict[str, list[np.ndarray]] = {m: [] for m in names}
    for m in names:
        for j in qidx:
            out = methods[m](j)
            results[m].append(out[1] if isinstance(out, tuple) else out)
        print(f"quality pass: {m}", flush=True)
    # Latency: the first --timed queries, repeats interleaved, first method rotating.
    timed_idx = qidx[: args.timed]
    times: dict[str, list[list[float]]] = {m: [[] for _ in timed_idx] for m in names}
    for rep in range(args.repeats):
        for n, j in enumerate(timed_idx):
            shift = (rep + n) % len(names)
            for m in names[shift:] + names[:shift]:
                seconds, out = timed(methods[m], j)
                if isinstance(out, tuple):  # peers time themselves (no pipe overhead)
                    seconds = out[0]
                times[m][n].append(seconds)
        print(f"repeat {rep + 1}/{args.repeats} done", flush=True)
    rows = {}
    for m in names:
        per_query = [float(np.median(t)) for t in times[m]]
        rows[m] = {
            **summary(per_query),
            "recall@10": recall(truth, results[m]),
            "ndcg@10": ndcg(vecs, qidx, results[m]),
        }
    rows["colmax plaid"].update(
        build_seconds=plaid_info["build_seconds"],
        build_cpu_seconds=plaid_info.get("build_cpu_seconds"),
        bytes_per_token=plaid_info["bytes"] / plaid_info["n_tokens"],
        payload_bytes_per_token=plaid_info["payload_bytes_per_token"],
    )
    if flats is not None:
        rows["colmax flat (exact)"].update(
            build_seconds=report["flat_prepare_seconds"],
            bytes_per_token=2 * vecs.dim + 16 * len(vecs.doc_ids) / report["n_tokens"],
        )
    for p in peers:
        rows[p.name].update(
            build_seconds=p.info["build_seconds"],
            build_cpu_seconds=p.info.get("build_cpu_seconds"),
            bytes_per_token=p.info["bytes"] / p.info["n_tokens"],
        )
        p.close()
    if args.flat_parts > 1:
        rows["colmax flat (exact)"] = flat_in_parts(vecs, qs, qidx[: args.flat_queries], args)
        rows["colmax flat (exact)"]["ndcg@10"] = ndcg(
            vecs, qidx, list(truth[:, :10]), list(truth_scores[:, :10])
        )
    report["methods"] = rows
    report["truth_ndcg@10"] = ndcg(vecs, qidx, list(truth[:, :10]), list(truth_scores[:, :10]))
    report["plaid_build"] = plaid_info
    report["curve"] = curve(plaid, qs, qidx, truth, vecs) if args.curve else []
    report["machine_after"] = machine()
    return report


def flat_in_parts(
    vecs: CachedVectors, qs: list[torch.Tensor], qidx: list[int], args: argparse.Namespace
) -> dict[str, Any]:
    """Exact latency when the float32 compute copy of the whole corpus does not fit beside the
    rest: each part is prepared in turn and a query's latency is the sum over parts (what a
    flat index over those segments does for one query)."""
    per_query = np.zeros(len(qidx))
    prep = 0.0
    for seg in parts(vecs, args.flat_parts):
        seconds, flat = timed(FlatIndex(vecs.dim).with_segment, seg, NONE)
        prep += seconds
        for n, j in enumerate(qidx):
            per_query[n] += float(
                np.median([timed(flat.search, [qs[j]], 10)[0] for _ in range(args.repeats)])
            )
        del flat
    return {
        **summary(per_query.tolist()),
        "recall@10": 1.0,
        "build_seconds": prep,
        "bytes_per_token": 2 * vecs.dim,
        "queries_timed": len(qidx),
    }


def curve(
    plaid: PlaidIndex,
    qs: list[torch.Tensor],
    qidx: list[int],
    truth: np.ndarray,
    vecs: CachedVectors,
) -> list[dict[str, Any]]:
    points = []
    for nprobe, ndocs, nfinal in CURVE:
        index = plaid.with_settings(PlaidSettings(nprobe=nprobe, ndocs=ndocs, nfinal=nfinal))
        seconds, got = [], []
        for j in qidx:
            s, r = timed(index.search, [qs[j]], 10)
            seconds.append(s)
            got.append(r[0].keys)
        points.append(
            {
                "nprobe": nprobe,
                "ndocs": ndocs,
                "nfinal": nfinal,
                **summary(seconds),
                "recall@10": recall(truth, got),
                "ndcg@10": ndcg(vecs, qidx, got),
            }
        )
        print("curve", json.dumps(points[-1]), flush=True)
    return points


def markdown(report: dict[str, Any]) -> str:
    lines = [
        "| method | build s | bytes/token | p50 ms | p95 ms | Recall@10 vs exact | nDCG@10 |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in report["methods"].items():
        lines.append(
            f"| {name} | {r.get('build_seconds', float('nan')):.0f} | {r.get('bytes_per_token', float('nan')):.1f} | {r['p50_ms']:.1f} | {r['p95_ms']:.1f} | {r['recall@10']:.3f} | {r.get('ndcg@10', float('nan')):.4f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("dataset")
    parser.add_argument("--peers", default="", help="comma list of plaid,voyager")
    parser.add_argument("--queries", type=int, default=300, help="queries for quality")
    parser.add_argument("--timed", type=int, default=100, help="queries timed (the first ones)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--nbits", type=int, default=2)
    parser.add_argument("--centroid-factor", type=float, default=PlaidSettings().centroid_factor)
    parser.add_argument("--kmeans-iters", type=int, default=PlaidSettings().kmeans_iters)
    parser.add_argument(
        "--flat-parts", type=int, default=1, help=">1: time exact search part by part"
    )
    parser.add_argument(
        "--flat-queries", type=int, default=20, help="queries timed with --flat-parts"
    )
    parser.add_argument("--no-curve", dest="curve", action="store_false")
    parser.add_argument("--rebuild", action="store_true")
    args = parser.parse_args()
    report = run(args)
    OUT.mkdir(parents=True, exist_ok=True)
    path = OUT / f"report-{args.dataset}-n{args.nbits}.json"
    path.write_text(json.dumps(report, indent=1))
    print(markdown(report))
    print(f"written {path}")
    for figure in plaid_figures(report):
        print(f"written {figure}")


if __name__ == "__main__":
    main()
