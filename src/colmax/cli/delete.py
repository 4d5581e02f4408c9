"""``colmax delete DIR ID...``: delete documents (a chunked document with all its chunks)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from colmax.cli._common import print_err
from colmax.errors import InvalidInputError

__all__ = ["register", "run"]


def register(subparsers: Any) -> None:
    """Add the ``delete`` parser."""
    parser = subparsers.add_parser(
        "delete",
        help="delete documents by id",
        description="Delete documents from DIR in one atomic commit. The id of a document "
        "indexed with --chunk-tokens deletes all its chunks. If any id is unknown, nothing is "
        "deleted.",
    )
    parser.add_argument("dir", metavar="DIR", help="the index folder")
    parser.add_argument("ids", metavar="ID", nargs="*", help="document ids")
    parser.add_argument(
        "--ids-from",
        metavar="FILE",
        help="also read ids from FILE, one a line as written (- for stdin)",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="print nothing on success")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Delete the ids; the model is not loaded (nothing is encoded)."""
    from colmax.engine import Engine

    ids = list(args.ids)
    if args.ids_from:
        ids += _read_ids(args.ids_from)
    if not ids:
        raise InvalidInputError("no ids given: pass ID arguments or --ids-from FILE")
    if not (Path(args.dir) / "manifest.json").is_file():
        raise InvalidInputError(f"{args.dir} is not a colmax index folder (no manifest.json)")
    with Engine(path=args.dir) as engine:
        deleted = engine.delete(list(dict.fromkeys(ids)))
    if not args.quiet:
        print_err(f"deleted {len(set(ids))} document(s) ({deleted} stored entries) from {args.dir}")
    return 0


def _read_ids(source: str) -> list[str]:
    if source == "-":
        lines = sys.stdin.read().splitlines()
    else:
        try:
            lines = Path(source).read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise InvalidInputError(f"{source}: cannot read ({exc.strerror or exc})") from None
        except UnicodeDecodeError as exc:
            raise InvalidInputError(f"{source}: not UTF-8 text ({exc.reason})") from None
    # Lines as written (without their line end): ids may have edge spaces, and stripping
    # " a" would delete "a". Blank lines are skipped.
    return [line for line in lines if line.strip()]
