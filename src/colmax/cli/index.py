"""``colmax index INPUT --model M --out DIR``: build a new index folder from files."""

from __future__ import annotations

import argparse
import os
import shutil
from pathlib import Path
from typing import Any

from colmax.cli._common import (
    add_chunk_options,
    add_compile_option,
    add_device_option,
    add_input_options,
    add_pool_option,
    print_err,
    read_input,
    summary,
    write_records,
)
from colmax.errors import InvalidInputError

__all__ = ["register", "run"]


def register(subparsers: Any) -> None:
    """Add the ``index`` parser."""
    parser = subparsers.add_parser(
        "index",
        help="build a new index from a JSONL/CSV file, a BEIR corpus or a folder of text files",
        description="Encode every document of INPUT with MODEL and write a new index folder. "
        "The folder appears only when the whole input is indexed: an error or Ctrl-C leaves "
        "nothing behind. Use 'colmax add' to add to an existing index.",
    )
    add_input_options(parser)
    parser.add_argument(
        "--model",
        required=True,
        help="model folder or Hugging Face Hub id (any ColBERT, PyLate "
        "or plain Hugging Face encoder)",
    )
    parser.add_argument(
        "--out", required=True, help="the new index folder (must not exist, or be empty)"
    )
    parser.add_argument("--index", default="flat", help='index kind (default "flat": exact MaxSim)')
    add_chunk_options(parser)
    add_pool_option(parser)
    add_device_option(parser)
    add_compile_option(parser)
    parser.add_argument(
        "--dpi",
        type=int,
        default=150,
        help="PDF rendering resolution when INPUT holds PDFs or images and MODEL is a vision "
        "retriever (ColPali, ColQwen): each page becomes a document (default 150)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Index INPUT into a staging folder beside ``--out``, then rename it into place."""
    from colmax.engine import Engine

    out = Path(args.out).absolute()
    _check_target(out)
    if _is_pages_input(args.input):
        return _index_pages(args, out)
    records = read_input(args)  # opens and checks the input before the model is loaded
    first = next(records, None)
    if first is None:
        raise InvalidInputError(f"{args.input}: no documents found")
    staging = out.with_name(f".{out.name}.indexing-{os.getpid()}")
    # The chunk size is recorded in the index: every door that opens it chunks the same way.
    engine = Engine.from_pretrained(
        args.model,
        index=args.index,
        path=staging,
        device=args.device,
        compile=args.compile,
        chunk_tokens=args.chunk_tokens,
        chunk_overlap=args.chunk_overlap,
    )
    try:
        stats = write_records(
            engine,
            _chain(first, records),
            batch_size=args.batch_size,
            progress=not args.quiet,
            pool_factor=args.pool_factor,
        )
        if stats.entries == 0:
            raise InvalidInputError(f"{args.input}: every document is empty; nothing to index")
        engine.close()
        _publish(staging, out)
    except BaseException:
        engine.close()
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if not args.quiet:
        print_err(summary(stats, "indexed", out, args.chunk_tokens is not None))
    return 0


def _is_pages_input(value: str) -> bool:
    """A PDF or image file, or a folder holding some (and no text files): pages to render."""
    from colmax.vision.pages import IMAGE_SUFFIXES, PDF_SUFFIXES

    pages = IMAGE_SUFFIXES + PDF_SUFFIXES
    path = Path(value)
    if path.is_file():
        return path.suffix.lower() in pages
    if not path.is_dir() or (path / "corpus.jsonl").is_file():
        return False
    suffixes = {p.suffix.lower() for p in path.rglob("*") if p.is_file()}
    return bool(suffixes & set(pages)) and not suffixes & {".txt", ".md"}


def _index_pages(args: argparse.Namespace, out: Path) -> int:
    """Render and embed every page of INPUT (PDFs, images) with a vision retriever."""
    from colmax.engine import Engine
    from colmax.errors import NoEncoderError

    staging = out.with_name(f".{out.name}.indexing-{os.getpid()}")
    engine = Engine.from_pretrained(args.model, index=args.index, path=staging, device=args.device)
    try:
        if not hasattr(engine.encoder, "encode_pages"):
            raise NoEncoderError(
                f"{args.input} holds PDFs or images: index them with a vision retriever "
                f"(ColPali, ColQwen), not {args.model}"
            )
        ids = engine.add_files(
            [args.input], dpi=args.dpi, pool_factor=args.pool_factor,
            show_progress=not args.quiet,
        )  # fmt: skip
        if not ids:
            raise InvalidInputError(f"{args.input}: no PDF or image pages found")
        engine.close()
        _publish(staging, out)
    except BaseException:
        engine.close()
        shutil.rmtree(staging, ignore_errors=True)
        raise
    if not args.quiet:
        print_err(f"indexed {len(ids)} pages into {out}")
    return 0


def _chain(first: Any, rest: Any) -> Any:
    yield first
    yield from rest


def _check_target(out: Path) -> None:
    if (out / "manifest.json").is_file():
        raise InvalidInputError(
            f"{out} is already an index; add documents with 'colmax add {out} INPUT', "
            "or choose another --out"
        )
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise InvalidInputError(f"{out} exists and is not an empty folder; choose another --out")


def _publish(staging: Path, out: Path) -> None:
    """Move the finished index into place (an empty target folder is replaced)."""
    _check_target(out)  # it may have appeared while we were indexing
    if out.is_dir():
        out.rmdir()
    staging.rename(out)
    fd = os.open(out.parent, os.O_RDONLY)  # make the rename itself durable
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
