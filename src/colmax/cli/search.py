"""``colmax search DIR "query"``: the top documents for one or more queries."""

from __future__ import annotations

import argparse
import json
from typing import TYPE_CHECKING, Any, cast

from colmax.cli._common import add_device_option, format_hits, hit_json, parse_filter

if TYPE_CHECKING:
    from colmax.types import Hit

__all__ = ["register", "run"]


def register(subparsers: Any) -> None:
    """Add the ``search`` parser."""
    parser = subparsers.add_parser(
        "search",
        help="search an index from the shell",
        description="Print the best documents for each QUERY. Chunk hits are collapsed to their "
        "parent document (best chunk per parent; the chunk id is shown) unless --chunks.",
    )
    parser.add_argument("dir", metavar="DIR", help="the index folder")
    parser.add_argument("queries", metavar="QUERY", nargs="+", help="query text(s)")
    parser.add_argument("-k", "--k", type=int, default=10, help="results per query (default 10)")
    parser.add_argument(
        "--filter",
        metavar="JSON",
        help='metadata filter, e.g. \'{"year": {"$gte": 2020}, "lang": {"$in": ["en", "de"]}}\'',
    )
    parser.add_argument(
        "--json",
        action="store_true",
        help="print one JSON object per query: {query, hits: [{id, score, rank, text, metadata}]}",
    )
    parser.add_argument(
        "--chunks", action="store_true", help="list chunk hits as they are, not per parent"
    )
    add_device_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Search and print."""
    from colmax.chunking import search_parents
    from colmax.engine import Engine
    from colmax.validation import check_k

    k = check_k(args.k)
    filter_ = parse_filter(args.filter)
    results: list[list[Hit]]
    with Engine.load(args.dir, device=args.device) as engine:
        if args.chunks:
            found = engine.search(list(args.queries), k=k, filter=filter_)
            results = cast("list[list[Hit]]", found)  # a list of queries: one list each
        else:
            results = search_parents(engine, list(args.queries), k=k, filter=filter_)
    for i, (query, hits) in enumerate(zip(args.queries, results)):
        if args.json:
            print(
                json.dumps(
                    {"query": query, "hits": [hit_json(h) for h in hits]}, ensure_ascii=False
                )
            )
        else:
            if len(args.queries) > 1:
                print(f"{'' if i == 0 else chr(10)}Q: {query}")
            print(format_hits(hits))
    return 0
