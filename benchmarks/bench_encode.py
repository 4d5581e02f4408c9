"""Encoding throughput: colmax (eager and ``compile=True``) against PyLate on one checkpoint.

::

    .venv/bin/python benchmarks/bench_encode.py --datasets cranfield scifact --sample 512 \\
        --repeats 5 --out runs/bench-encode.json

Each system runs in its own process (``_encode_worker.py``; PyLate in ``.venv-peers``), all
on the same PyLate-format checkpoint (``runs/parity/pylate``, from
``scripts/make_checkpoints.py``) and the same first ``--sample`` non-empty documents of each
data set. After a warm-up pass (when ``torch.compile`` compiles), every repeat asks each
system in turn, in a rotated order, to encode the sample with batch size 32, so background
load hits all of them alike; the table gives the median documents/s and its ratio to PyLate.
Single-query latency is the median over ``--queries`` queries encoded one at a time, also
interleaved; query throughput encodes the same queries in batches of 32, once per repeat. The last column is the largest difference between the system's embeddings and
the reference system's (``--reference``, PyLate by default) on 64 documents and 64 queries
(token counts must match exactly, or it says so).

``--systems colmax-float32 transformers-float32 onnxruntime-float32 onnxruntime-int8
--reference transformers-float32 --checkpoint <MiniLM folder>`` asks whether another runtime
(ONNX Runtime, float32 or dynamic int8) beats torch on a host without native bfloat16; the
last column then also gives the token cosine against the plain float32 forward (the 0.999 gate).

``--systems colmax sentence-transformers --reference sentence-transformers --checkpoint
<MultiVectorEncoder folder>`` compares colmax with sentence-transformers 6 on its own format.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _jsonl_process import JsonLineProcess, rotated

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
WORKER = Path(__file__).resolve().parent / "_encode_worker.py"
PEERS_PY = Path(os.environ.get("COLMAX_PEERS_PYTHON", REPO / ".venv-peers" / "bin" / "python"))
SYSTEMS = {
    "pylate": PEERS_PY,
    "colmax": Path(sys.executable),
    "colmax-float32": Path(sys.executable),
    # float32, queries through ONNX Runtime (query_runtime="onnxruntime").
    "colmax-onnxruntime": Path(sys.executable),
    "transformers-float32": Path(sys.executable),
    # The same plain forward through ONNX Runtime (needs onnxruntime and onnx installed).
    "onnxruntime-float32": Path(sys.executable),
    "onnxruntime-int8": Path(sys.executable),
    "colmax-compiled": Path(sys.executable),
    # sentence-transformers 6 (MultiVectorEncoder) shares colmax's environment.
    "sentence-transformers": Path(sys.executable),
}


def _start(name: str, checkpoint: Path, texts: Path, log: Path) -> JsonLineProcess:
    """One system's ``_encode_worker.py``; its ready line holds ``load_s`` and ``warmup_s``."""
    return JsonLineProcess(name, [SYSTEMS[name], WORKER, name, checkpoint, texts], log=log)


def _max_diff(path: Path, reference: Path) -> str:
    """Largest absolute difference, then the mean and lowest token cosine (the quality gate)."""
    got, ref = np.load(path), np.load(reference)
    worst = 0.0
    cosines = []
    for vectors, offsets in (("docs", "doc_offsets"), ("queries", "query_offsets")):
        if not np.array_equal(got[offsets], ref[offsets]):
            return f"token counts differ ({vectors})"
        a, b = got[vectors].astype(np.float64), ref[vectors].astype(np.float64)
        worst = max(worst, float(np.abs(a - b).max()))
        cosines.append((a * b).sum(1) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1))
    cos = np.concatenate(cosines)
    return f"{worst:.1e} (cos {cos.mean():.5f}, min {cos.min():.4f})"


def run_dataset(name: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    from colmax.beir import load_beir

    data = load_beir(DATA / name)
    texts = [t for t in data.corpus.values() if t.strip()][: args.sample]
    queries = list(data.judged_queries().values())[: max(args.queries, 64)]
    texts_path = work / f"{name}.json"
    texts_path.write_text(json.dumps({"texts": texts, "queries": queries}), encoding="utf-8")
    workers = {}
    for system in args.systems:  # started one after another: warm-ups do not overlap
        print(f"[{name}] starting {system}", file=sys.stderr, flush=True)
        workers[system] = _start(system, args.checkpoint, texts_path, work / f"{name}-{system}.log")
    seconds: dict[str, list[float]] = {s: [] for s in workers}
    query_s: dict[str, list[float]] = {s: [] for s in workers}
    tokens: dict[str, int] = {}
    for rep in range(args.repeats):
        order = rotated(args.systems, rep)
        for system in order:
            reply = workers[system].ask(n=len(texts))
            seconds[system].append(reply["seconds"])
            tokens[system] = reply["tokens"]
        print(
            f"[{name}] repeat {rep + 1}: "
            + ", ".join(f"{s} {len(texts) / seconds[s][-1]:.1f} docs/s" for s in order),
            file=sys.stderr,
            flush=True,
        )
    for i in range(args.queries):
        for system in rotated(args.systems, i):
            query_s[system].append(workers[system].ask(query=i)["seconds"])
    batch_s: dict[str, list[float]] = {s: [] for s in workers}
    for rep in range(args.repeats):
        for system in rotated(args.systems, rep):
            batch_s[system].append(workers[system].ask(queries=args.queries)["seconds"])
    for system, worker in workers.items():
        worker.ask(save=str(work / f"{name}-{system}.npz"), n=64)
    reference = work / f"{name}-{args.reference}.npz"
    rows = {}
    for system, worker in workers.items():
        median = statistics.median(seconds[system])
        rows[system] = {
            "docs_per_s": len(texts) / median,
            "tokens_per_s": tokens[system] / median,
            "runs_s": seconds[system],
            "query_p50_ms": 1000 * statistics.median(query_s[system]),
            "query_p95_ms": 1000 * float(np.percentile(query_s[system], 95)),
            "queries_per_s_batched": args.queries / statistics.median(batch_s[system]),
            "load_s": worker.ready["load_s"],
            "warmup_s": worker.ready["warmup_s"],
            "max_abs_diff_vs_reference": _max_diff(work / f"{name}-{system}.npz", reference)
            if args.reference in workers
            else "n/a",
        }
        worker.close(timeout=60)
    base = rows.get(args.reference, next(iter(rows.values())))["docs_per_s"]
    for row in rows.values():
        row["x_reference"] = row["docs_per_s"] / base
    return {"documents": len(texts), "tokens": tokens, "systems": rows, "reference": args.reference}


def markdown(name: str, result: dict[str, Any]) -> str:
    lines = [
        f"**{name}** ({result['documents']} documents)",
        "",
        f"| system | docs/s | x {result['reference']} | tokens/s | 1-query p50 / p95 ms "
        f"| queries/s in batches of 32 | load s | warm-up s | max abs diff vs {result['reference']} |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for system, row in result["systems"].items():
        lines.append(
            f"| {system} | {row['docs_per_s']:.1f} | {row['x_reference']:.2f}x | "
            f"{row['tokens_per_s']:,.0f} | {row['query_p50_ms']:.1f} / {row['query_p95_ms']:.1f} | "
            f"{row['queries_per_s_batched']:.1f} | {row['load_s']:.1f} | {row['warmup_s']:.1f} | "
            f"{row['max_abs_diff_vs_reference']} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", nargs="+", default=["cranfield", "scifact"])
    parser.add_argument("--systems", nargs="+", default=list(SYSTEMS), choices=list(SYSTEMS))
    parser.add_argument("--checkpoint", type=Path, default=REPO / "runs" / "parity" / "pylate")
    parser.add_argument("--sample", type=int, default=512, help="documents per timed pass")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--queries", type=int, default=50, help="single-query latency samples")
    parser.add_argument(
        "--reference", default="pylate", choices=list(SYSTEMS), help="ratio and parity base"
    )
    parser.add_argument("--out", type=Path, help="write the results as JSON")
    args = parser.parse_args()
    from colmax.hardware import detect  # every benchmark reports what it ran on

    print(detect().summary(), flush=True)
    if not args.checkpoint.is_dir():
        parser.error(f"{args.checkpoint} missing: run scripts/make_checkpoints.py (peers' env)")
    results: dict[str, Any] = {"cpu_threads": os.cpu_count(), "datasets": {}}
    with tempfile.TemporaryDirectory(prefix="colmax-bench-encode-") as tmp:
        for name in args.datasets:
            results["datasets"][name] = run_dataset(name, args, Path(tmp))
            print(markdown(name, results["datasets"][name]) + "\n", flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
