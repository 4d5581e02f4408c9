"""colmax next to PyLate, RAGatouille and BM25 on the same checkpoint and the same data.

One command runs every system on every data set and prints (and optionally writes) a Markdown
table per data set::

    nice -n 10 .venv/bin/python benchmarks/peers.py --datasets cranfield scifact \\
        --out runs/peers.json --markdown runs/peers.md

Each system runs in its own process (``benchmarks/_peers_worker.py``), started with colmax's
Python or the peers' (``.venv-peers``, made by ``scripts/make_peer_env.sh``). For each data
set, the systems build one after another (nothing else of this script runs meanwhile), then
answer every judged query one at a time, ``--repeats`` times, in a rotated order, so every
system sees the same background load. The table reports:

- nDCG@10 and Recall@100 (``colmax.evaluation.score_run``, ir-measures, the same code for all);
- encode throughput: documents/s encoding the first ``--encode-sample`` documents again,
  once per repeat, interleaved across systems (median); only where encoding is separable;
- index build time (after encoding; RAGatouille's includes its encoding);
- p50 / p95 query latency (one query, end to end: query encoding + search), median over
  repeats of each percentile;
- p50 of the search alone, from query vectors encoded beforehand (untimed), where the system
  takes query vectors (not RAGatouille, not BM25): the "same embeddings" comparison;
- peak resident memory of the system's process, and the index's bytes on disk;
- each as a ratio to colmax (``x`` columns: > 1 means more, e.g. slower or bigger).

Checkpoints: ``scripts/make_checkpoints.py`` (peers' environment) writes a PyLate checkpoint
of the MiniLM weights (``runs/parity/pylate``), which colmax and PyLate load, and a colbert-ai
export of the same weights and projection (``runs/parity/stanford``), which RAGatouille needs
(RAGatouille cannot read the PyLate layout; the two differ only by their marker tokens).

Adding a system (plaid, qdrant, ...) is one function in ``_peers_worker.py`` plus one line in
:data:`SYSTEMS` below.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _jsonl_process import JsonLineProcess, rotated

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
WORKER = Path(__file__).resolve().parent / "_peers_worker.py"
COLMAX_PY = Path(sys.executable)
PEERS_PY = Path(os.environ.get("COLMAX_PEERS_PYTHON", REPO / ".venv-peers" / "bin" / "python"))
PARITY = REPO / "runs" / "parity"


@dataclass(frozen=True)
class System:
    """A row of the table: which worker function, in which environment, on which checkpoint."""

    label: str
    python: Path
    checkpoint: str  # a sub-folder of --checkpoints
    note: str = ""


#: name (as in _peers_worker.SYSTEMS) -> how to run it. colmax-flat must come first (ratios).
SYSTEMS: dict[str, System] = {
    "colmax-flat": System("colmax flat (exact)", COLMAX_PY, "pylate"),
    "colmax-plaid": System("colmax plaid (2-bit)", COLMAX_PY, "pylate", "compressed"),
    "qdrant-edge": System("Qdrant edge (MAX_SIM)", COLMAX_PY, "pylate", 'via index="qdrant"'),
    "pylate-exact": System("PyLate colbert_scores (exact)", PEERS_PY, "pylate"),
    "maxsim-cpu": System("maxsim-cpu (exact scan)", COLMAX_PY, "pylate", "colmax's vectors"),
    "pylate-voyager": System("PyLate Voyager + rank.rerank", PEERS_PY, "pylate"),
    "ragatouille": System("RAGatouille PLAID", PEERS_PY, "stanford", "colbert-ai export"),
    "bm25s": System("BM25 (bm25s)", COLMAX_PY, "pylate", "lexical, no model"),
}


class Worker(JsonLineProcess):
    """A running ``_peers_worker.py`` process; one JSON request, one JSON reply."""

    def __init__(self, name: str, spec: System, input_path: Path, ckpt: Path, work: Path) -> None:
        argv = [spec.python, WORKER, name, input_path, ckpt, work / name]
        super().__init__(name, argv, log=work / f"{name}.log", cwd=work)  # ready: {"ready": true}

    def close(self) -> None:  # type: ignore[override]
        super().close({"cmd": "quit"}, timeout=120)


def write_input(
    data_root: Path, dataset: str, folder: Path
) -> tuple[Path, dict[str, dict[str, int]]]:
    """The corpus (empty documents skipped) and judged queries, as every worker reads them."""
    from colmax.beir import load_beir

    data = load_beir(data_root / dataset)
    ids = [i for i, text in data.corpus.items() if text.strip()]
    queries = data.judged_queries()
    payload = {
        "ids": ids,
        "texts": [data.corpus[i] for i in ids],
        "qids": list(queries),
        "queries": list(queries.values()),
    }
    path = folder / f"{dataset}.json"
    path.write_text(json.dumps(payload), encoding="utf-8")
    return path, {q: data.qrels[q] for q in queries}


def run_dataset(args: argparse.Namespace, dataset: str, work: Path) -> dict[str, dict[str, Any]]:
    from colmax.evaluation import score_run

    names, checkpoints, repeats, k = args.systems, args.checkpoints, args.repeats, args.k
    input_path, qrels = write_input(args.data_root, dataset, work)
    workers: dict[str, Worker] = {}
    results: dict[str, dict[str, Any]] = {}
    try:
        for name in names:  # build one at a time: nothing else of ours runs meanwhile
            spec = SYSTEMS[name]
            print(f"[{dataset}] {name}: building ...", file=sys.stderr, flush=True)
            start = time.perf_counter()
            workers[name] = Worker(name, spec, input_path, checkpoints / spec.checkpoint, work)
            results[name] = workers[name].ask(cmd="build")
            results[name]["wall_s"] = time.perf_counter() - start
            print(f"[{dataset}] {name}: {results[name]}", file=sys.stderr, flush=True)
        p50: dict[str, list[float]] = {n: [] for n in names}
        p95: dict[str, list[float]] = {n: [] for n in names}
        search_p50: dict[str, list[float]] = {n: [] for n in names}
        encode_s: dict[str, list[float]] = {n: [] for n in names}
        n_sample = min(args.encode_sample, len(json.loads(input_path.read_text())["ids"]))
        for rep in range(repeats):
            order = rotated(names, rep)
            for name in order:
                seconds = workers[name].ask(cmd="encode", n=n_sample)["seconds"]
                if seconds is not None:
                    encode_s[name].append(seconds)
            for name in order:
                reply = workers[name].ask(cmd="search", k=k)
                lat = np.asarray(reply["latencies"]) * 1000
                p50[name].append(float(np.percentile(lat, 50)))
                p95[name].append(float(np.percentile(lat, 95)))
                if reply.get("search_latencies"):
                    alone = np.asarray(reply["search_latencies"]) * 1000
                    search_p50[name].append(float(np.percentile(alone, 50)))
                results[name]["metrics"] = score_run(qrels, reply["run"], 10)
                print(f"[{dataset}] {name} pass {rep}: p50 {p50[name][-1]:.1f} ms", file=sys.stderr)
        for name in names:
            if encode_s[name]:
                results[name]["encode_docs_per_s"] = n_sample / float(np.median(encode_s[name]))
                results[name]["encode_sample_s_all"] = encode_s[name]
            results[name]["p50_ms"] = float(np.median(p50[name]))
            results[name]["p95_ms"] = float(np.median(p95[name]))
            results[name]["p50_ms_all"] = p50[name]
            if search_p50[name]:
                results[name]["search_p50_ms"] = float(np.median(search_p50[name]))
                results[name]["search_p50_ms_all"] = search_p50[name]
            results[name].update(workers[name].ask(cmd="memory"))
    finally:
        for worker in workers.values():
            worker.close()
    return results


def _ratio(value: float | None, base: float | None) -> str:
    if value is None or base is None or base == 0:
        return ""
    return f"{value / base:.2f}x"


def _fmt(value: float | None, digits: int = 1) -> str:
    return "n/a" if value is None else f"{value:,.{digits}f}"


def markdown(dataset: str, results: dict[str, dict[str, Any]]) -> str:
    base = results.get("colmax-flat", {})
    head = (
        "| system | nDCG@10 | R@100 | encode docs/s | x | index build s | x | p50 ms | x | "
        "p95 ms | x | search alone p50 ms | x | peak RSS MiB | x | disk MiB | x |\n"
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    )
    rows = [head]
    for name, r in results.items():
        docs_s, base_docs_s = r.get("encode_docs_per_s"), base.get("encode_docs_per_s")
        disk = r["disk_bytes"] / 2**20 if r.get("disk_bytes") else None
        base_disk = base["disk_bytes"] / 2**20 if base.get("disk_bytes") else None
        label = SYSTEMS[name].label + (f" ({SYSTEMS[name].note})" if SYSTEMS[name].note else "")
        cells = [
            label,
            f"{r['metrics']['nDCG@10']:.4f}",
            f"{r['metrics']['R@100']:.4f}",
            _fmt(docs_s),
            _ratio(docs_s, base_docs_s),
            _fmt(r["index_s"], 2),
            _ratio(r["index_s"], base.get("index_s")),
            _fmt(r["p50_ms"]),
            _ratio(r["p50_ms"], base.get("p50_ms")),
            _fmt(r["p95_ms"]),
            _ratio(r["p95_ms"], base.get("p95_ms")),
            _fmt(r.get("search_p50_ms")),
            _ratio(r.get("search_p50_ms"), base.get("search_p50_ms")),
            _fmt(r["peak_rss_mib"], 0),
            _ratio(r["peak_rss_mib"], base.get("peak_rss_mib")),
            _fmt(disk),
            _ratio(disk, base_disk),
        ]
        rows.append("| " + " | ".join(cells) + " |")
    first = next(iter(results.values()))
    return f"#### {dataset} ({first['documents']:,} documents)\n\n" + "\n".join(rows) + "\n"


def machine() -> dict[str, Any]:
    import torch

    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in subprocess.run(
                ["lscpu"], capture_output=True, text=True
            ).stdout.splitlines()
            if line.startswith("Model name")
        ),
        platform.processor(),
    )
    from colmax.hardware import detect

    load = os.getloadavg()
    return {
        "hardware": detect().to_dict(),
        "cpu": model,
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load": load,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", default=["cranfield", "scifact"])
    parser.add_argument("--data-root", type=Path, default=DATA, help="folder of BEIR folders")
    parser.add_argument("--systems", nargs="+", default=list(SYSTEMS), choices=list(SYSTEMS))
    parser.add_argument(
        "--checkpoints", type=Path, default=PARITY, help="make_checkpoints.py --out"
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument(
        "--encode-sample", type=int, default=256, help="documents per encode throughput pass"
    )
    parser.add_argument("--out", type=Path, help="write all numbers as JSON")
    parser.add_argument("--markdown", type=Path, help="write the tables as Markdown")
    parser.add_argument("--work", type=Path, help="keep the indexes here (default: temporary)")
    parser.add_argument(
        "--share-vectors",
        action="store_true",
        help="PyLate systems reuse colmax's document vectors (equal to 3e-7) instead of "
        "encoding the corpus again; their throughput still comes from the interleaved passes",
    )
    parser.add_argument(
        "--compile",
        action="store_true",
        help="colmax systems load their encoder with compile=True (torch.compile), as for "
        "bulk indexing",
    )
    args = parser.parse_args()
    if args.compile:
        os.environ["COLMAX_BENCH_COMPILE"] = "1"  # inherited by the workers
    if args.share_vectors:
        os.environ["COLMAX_BENCH_SHARE_VECTORS"] = "1"  # inherited by the workers
    for spec in (SYSTEMS[n] for n in args.systems):
        if not spec.python.is_file():
            parser.error(f"{spec.python} is missing: bash scripts/make_peer_env.sh")
        if not (args.checkpoints / spec.checkpoint).is_dir():
            parser.error(
                f"{args.checkpoints / spec.checkpoint} is missing: .venv-peers/bin/python "
                f"scripts/make_checkpoints.py --out {args.checkpoints}"
            )
    from colmax.hardware import detect

    print(detect().summary(), flush=True)
    report: dict[str, Any] = {"machine": machine(), "command": " ".join(sys.argv), "datasets": {}}
    tables = []
    with tempfile.TemporaryDirectory(prefix="colmax-peers-") as tmp:
        for dataset in args.datasets:
            work = (args.work or Path(tmp)).resolve() / dataset  # workers run elsewhere
            work.mkdir(parents=True, exist_ok=True)
            results = run_dataset(args, dataset, work)
            report["datasets"][dataset] = results
            tables.append(markdown(dataset, results))
            print(tables[-1], flush=True)
    report["machine"]["load_after"] = os.getloadavg()
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(report, indent=1), encoding="utf-8")
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text("\n".join(tables), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
