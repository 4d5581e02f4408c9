"""``colmax eval``: retrieval quality and speed of a model on a BEIR-layout data set.

Example::

    colmax eval ../shared/data/scifact --model answerdotai/answerai-colbert-small-v1 \\
        --index flat --k 10 --json scifact.json

prints nDCG@10, Recall@100, MRR@10 (ir-measures), document encoding throughput, index build
time, query encoding throughput, search latency p50/p95 and the index size on disk, and writes
the same as JSON (see :class:`colmax.evaluation.EvalReport`).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from colmax.cli._common import add_compile_option

__all__ = ["register", "run"]

INDEX_KINDS = ("flat", "plaid", "qdrant")


def register(subparsers: Any) -> None:
    """Add the ``eval`` sub-command to the ``colmax`` parser's sub-parsers.

    Args:
        subparsers: the object ``ArgumentParser.add_subparsers()`` returned.
    """
    parser = subparsers.add_parser(
        "eval",
        help="nDCG@10, Recall@100, MRR@10 and timings on a BEIR-layout data set",
        description=__doc__.split("\n\n")[0],
    )
    parser.add_argument("data_dir", help="folder with corpus.jsonl, queries.jsonl, qrels/")
    parser.add_argument("--model", required=True, help="model folder or Hugging Face Hub id")
    parser.add_argument("--index", choices=INDEX_KINDS, default="flat", help="default: flat")
    parser.add_argument("--k", type=int, default=10, help="cutoff of nDCG and MRR (default 10)")
    parser.add_argument("--json", dest="json_out", help="also write the report to this file")
    parser.add_argument("--split", default="test", help="qrels split (default: test)")
    parser.add_argument("--device", help="cpu, cuda, cuda:1, mps (default: CUDA when present)")
    add_compile_option(parser)
    parser.add_argument("--batch-size", type=int, help="encoder batch size")
    parser.add_argument("--max-queries", type=int, help="score only the first N judged queries")
    parser.add_argument("--index-dir", help="keep the index in this new folder")
    parser.add_argument("--query-length", type=int, help="override the model's query length")
    parser.add_argument("--document-length", type=int, help="override the model's document length")
    parser.add_argument("--run", action="store_true", help="include the ranked run in the JSON")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Run the evaluation that ``args`` describe, print the table, write the JSON.

    Returns:
        0 on success (errors are raised as :class:`~colmax.errors.ColmaxError`).
    """
    from colmax.evaluation import run_eval

    overrides = {
        name: value
        for name, value in (
            ("query_length", args.query_length),
            ("document_length", args.document_length),
        )
        if value is not None
    }
    report = run_eval(
        args.data_dir,
        args.model,
        index=args.index,
        k=args.k,
        split=args.split,
        device=args.device,
        compile=args.compile,
        batch_size=args.batch_size,
        max_queries=args.max_queries,
        index_dir=args.index_dir,
        show_progress=True,
        **overrides,
    )
    print(report.table())
    if args.json_out:
        out = Path(args.json_out)
        out.parent.mkdir(parents=True, exist_ok=True)
        payload = report.to_json(include_run=args.run)
        out.write_text(json.dumps(payload, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {out}")
    return 0
