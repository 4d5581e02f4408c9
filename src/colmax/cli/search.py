"""``colmax search DIR "query"``: the top documents for one or more queries."""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
from pathlib import Path
from typing import TYPE_CHECKING, Any

from colmax.chunking.parents import entry_id
from colmax.cli._common import (
    add_device_option,
    add_download_option,
    format_hits,
    hit_json,
    parse_filter,
    side_scores,
)
from colmax.errors import InvalidInputError

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
    parser.add_argument(
        "--explain",
        action="store_true",
        help="print each hit's text with the words the query matched highlighted (bold "
        "yellow on a terminal, [word] otherwise) and the best passage underlined (»...«); "
        "with --json, each hit gets an 'explanation' object",
    )
    parser.add_argument(
        "--hybrid",
        choices=["rrf", "minmax", "rerank"],
        help="fuse with BM25 over the stored texts (needs colmax[hybrid]): rrf = reciprocal "
        "rank fusion, minmax = weighted min-max scaled scores, rerank = BM25 candidates "
        "reordered by MaxSim; the score shown is then the fused one. The BM25 index is kept "
        "in DIR/bm25 and rebuilt after writes",
    )
    parser.add_argument(
        "--candidates",
        type=int,
        metavar="N",
        help="with --hybrid: hits taken from each side before fusing (default 100)",
    )
    parser.add_argument(
        "--weight",
        type=float,
        help="with --hybrid: weight of the late-interaction side in [0, 1], BM25 gets the "
        "rest (default 0.5)",
    )
    parser.add_argument(
        "--out",
        metavar="DIR",
        help="with --explain: write a heatmap PNG per page hit (vision indexes) into DIR, "
        "named q<N>-<rank>.png (N: the query number), and print each path",
    )
    add_device_option(parser)
    add_download_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Search and print."""
    from colmax.engine import Engine
    from colmax.validation import check_positive_int

    k = check_positive_int(args.k)
    filter_ = parse_filter(args.filter)
    options: dict[str, Any] = {"explain": args.explain, "group_chunks": not args.chunks}
    tuning = {
        name: value
        for name, value in (("candidates", args.candidates), ("weight", args.weight))
        if value is not None
    }
    if args.hybrid is None and tuning:
        raise InvalidInputError("--candidates and --weight go with --hybrid MODE")
    if args.hybrid is not None:
        options.update(hybrid=args.hybrid, **tuning)
    if args.out is not None and not args.explain:
        raise InvalidInputError("--out DIR goes with --explain (it writes heatmap images)")
    with Engine.load(args.dir, device=args.device, download=args.download) as engine:
        results = engine.search(list(args.queries), k=k, filter=filter_, **options)
    for i, (query, hits) in enumerate(zip(args.queries, results)):
        images = write_heatmaps(hits, Path(args.out), i + 1) if args.out is not None else {}
        if args.json:
            print(
                json.dumps(
                    {"query": query, "hits": [hit_json(h) for h in hits]}, ensure_ascii=False
                )
            )
        else:
            if len(args.queries) > 1:
                print(f"{'' if i == 0 else chr(10)}Q: {query}")
            print(format_explained(hits) if args.explain else format_hits(hits))
        for id_, path in images.items():
            print(f"heatmap of {id_}: {path}", file=sys.stderr if args.json else sys.stdout)
    return 0


def write_heatmaps(hits: list[Hit], folder: Path, query_number: int) -> dict[str, Path]:
    """Write ``Explanation.to_image`` of each page hit to ``folder``; ``{id: path}``.

    Files are named ``q<query>-<rank>.png`` (ids may hold any character, names must not).
    """
    folder.mkdir(parents=True, exist_ok=True)
    written = {}
    for hit in hits:
        if hit.explanation is not None and hit.explanation.page is not None:
            path = folder / f"q{query_number}-{hit.rank + 1}.png"
            written[hit.id] = hit.explanation.to_image(path)
    return written


#: Characters of each hit's text shown by ``--explain``, centred on the best passage.
EXPLAIN_WIDTH = 400


def format_explained(hits: list[Hit], *, color: bool | None = None) -> str:
    """Hits with their text highlighted: the header line of :func:`format_hits`, then the text
    (cut to :data:`EXPLAIN_WIDTH` characters around the best passage), indented."""
    if not hits:
        return "no results"
    color = sys.stdout.isatty() if color is None else color
    blocks = []
    for hit in hits:
        entry = entry_id(hit)
        where = f" ({entry})" if entry != hit.id else ""
        head = f"{hit.rank + 1:>3}. [{hit.id}]{where} score={hit.score:.3f}{side_scores(hit)}"
        e = hit.explanation
        body = e.to_terminal(color=color, width=EXPLAIN_WIDTH) if e is not None else hit.text
        blocks.append(f"{head}\n{textwrap.indent(body, '     ', lambda line: True)}")
    return "\n".join(blocks)
