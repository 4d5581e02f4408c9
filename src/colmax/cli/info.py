"""``colmax info DIR``: counts, model and settings of an index."""

from __future__ import annotations

import argparse
import json
from typing import Any

from colmax.cli._common import add_device_option, add_download_option

__all__ = ["register", "run"]


def register(subparsers: Any) -> None:
    """Add the ``info`` parser."""
    parser = subparsers.add_parser(
        "info",
        help="show document and token counts, model and settings of an index",
        description="Print what an index folder holds: documents, token vectors, dimension, "
        "index kind, the model it was built with and its settings.",
    )
    parser.add_argument("dir", metavar="DIR", help="the index folder")
    parser.add_argument("--json", action="store_true", help="print the information as JSON")
    add_device_option(parser)
    add_download_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Open the index and print ``Engine.info()``."""
    from colmax.engine import Engine

    with Engine.load(args.dir, device=args.device, download=args.download) as engine:
        info = engine.info().to_dict()
    if args.json:
        print(json.dumps(info, indent=2, ensure_ascii=False))
        return 0
    encoder = info.get("encoder") or {}
    rows = [
        ("path", info.get("path")),
        ("documents", info.get("documents")),
        ("token vectors", info.get("tokens")),
        ("dimension", info.get("dim")),
        ("index", info.get("index")),
        ("model", encoder.get("model_name_or_path")),
        ("format", encoder.get("format")),
        ("query length", encoder.get("query_length")),
        ("document length", encoder.get("document_length")),
        ("generation", info.get("generation")),
    ]
    plaid = info.get("plaid") or {}
    if plaid.get("trained"):
        rows += [
            ("plaid codec", f"{plaid['centroids']} centroids, {plaid['nbits']} bits"),
            ("plaid drift", f"residual ratio {plaid['residual_ratio']}, growth {plaid['growth']}x"),
            ("plaid advice", plaid["advice"]),
        ]
    elif plaid:
        rows.append(("plaid", f"exact until {plaid['exact_until_tokens']} tokens"))
    for name, value in rows:
        if value is not None:
            print(f"{name + ':':<17}{value}")
    return 0
