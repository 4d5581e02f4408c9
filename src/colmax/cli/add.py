"""``colmax add DIR INPUT``: add or replace documents in an existing index."""

from __future__ import annotations

import argparse
from typing import Any

from colmax.cli._common import (
    add_chunk_options,
    add_compile_option,
    add_device_option,
    add_download_option,
    add_input_options,
    add_pool_option,
    print_err,
    read_input,
    summary,
    write_records,
)

__all__ = ["register", "run"]


def register(subparsers: Any) -> None:
    """Add the ``add`` parser."""
    parser = subparsers.add_parser(
        "add",
        help="add or replace documents in an existing index (upsert by id)",
        description="Encode the documents of INPUT with the index's own model and add them to "
        "DIR. A document whose id is already there is replaced (with its chunks). Documents are "
        "committed in batches of --batch-size: after an error or Ctrl-C the index holds every "
        "batch finished before it, and running the same command again completes it.",
    )
    parser.add_argument("dir", metavar="DIR", help="the index folder")
    add_input_options(parser)
    add_chunk_options(parser)
    add_pool_option(parser)
    add_device_option(parser)
    add_download_option(parser)
    add_compile_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Upsert INPUT into DIR batch by batch."""
    from colmax.engine import Engine

    records = read_input(args)
    with Engine.load(
        args.dir,
        device=args.device,
        download=args.download,
        compile=args.compile,
        chunk_tokens=args.chunk_tokens,  # None: as the index records
        chunk_overlap=args.chunk_overlap,
    ) as engine:
        chunked = engine.chunker is not None
        stats = write_records(
            engine,
            records,
            batch_size=args.batch_size,
            progress=not args.quiet,
            pool_factor=args.pool_factor,
        )
    if not args.quiet:
        print_err(summary(stats, "added", args.dir, chunked))
    return 0
