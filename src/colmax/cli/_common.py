"""Options and helpers shared by several commands (ingest options, writing in batches, hits)."""

from __future__ import annotations

import argparse
import json
import sys
import textwrap
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from colmax.chunking.parents import entry_id
from colmax.errors import InvalidInputError

if TYPE_CHECKING:
    from colmax.engine import Engine
    from colmax.ingest import Record
    from colmax.types import Hit

__all__ = [
    "WriteStats",
    "add_chunk_options",
    "add_compile_option",
    "add_device_option",
    "add_input_options",
    "add_pool_option",
    "add_query_runtime_option",
    "format_hits",
    "hit_json",
    "parse_filter",
    "print_err",
    "read_input",
    "side_scores",
    "summary",
    "write_records",
]


def add_device_option(parser: argparse.ArgumentParser) -> None:
    """``--device``."""
    parser.add_argument(
        "--device", help="cpu, cuda, cuda:1, mps (default: CUDA when available, else CPU)"
    )


def add_download_option(parser: argparse.ArgumentParser) -> None:
    """``--download``: for the commands that open an index (and load the model it names)."""
    parser.add_argument(
        "--download",
        action="store_true",
        help="fetch the model the index names from the Hugging Face Hub if it is not on this "
        "machine (off by default: the name comes from the index folder, not from you)",
    )


def add_compile_option(parser: argparse.ArgumentParser) -> None:
    """``--compile``: for the commands that encode many documents."""
    parser.add_argument(
        "--compile",
        action="store_true",
        help="run the model through torch.compile: 1.2-1.3x faster encoding on a CPU after "
        "tens of seconds of compilation; worth it for thousands of documents",
    )


def add_query_runtime_option(parser: argparse.ArgumentParser, default: str) -> None:
    """``--query-runtime``: for the commands that answer queries."""
    parser.add_argument(
        "--query-runtime",
        choices=["torch", "onnxruntime", "auto"],
        default=None,
        help="what encodes queries: torch; onnxruntime (the same float32 model exported at "
        "start-up, 2-3x lower query latency on CPUs without native bfloat16; pip install "
        "'colmax[onnx]'); auto (onnxruntime where installed and applicable). Default: "
        f"$COLMAX_QUERY_RUNTIME, else {default}",
    )


def add_input_options(parser: argparse.ArgumentParser) -> None:
    """``INPUT`` and the options that say how to read it."""
    from colmax.ingest import FORMATS

    parser.add_argument(
        "input",
        metavar="INPUT",
        help="a .jsonl file, a .csv/.tsv file with a header row, a BEIR folder (corpus.jsonl), "
        "a folder of .txt/.md files (id = relative path), or - for JSONL on stdin",
    )
    parser.add_argument(
        "--format", choices=FORMATS, default="auto", help="input format (default: from the path)"
    )
    parser.add_argument(
        "--id-field", help='JSONL key / CSV column with the id (default: "id", else "_id")'
    )
    parser.add_argument(
        "--text-field", default="text", help='key / column with the text (default: "text")'
    )
    parser.add_argument(
        "--metadata-fields",
        help="comma-separated keys / columns kept as metadata (default: all other fields)",
    )
    parser.add_argument(
        "--batch-size",
        type=_positive_int,
        default=256,
        help="documents encoded and committed together (default 256)",
    )
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")


def add_chunk_options(parser: argparse.ArgumentParser) -> None:
    """``--chunk-tokens`` / ``--chunk-overlap``."""
    parser.add_argument(
        "--chunk-tokens",
        type=_positive_int,
        metavar="N",
        help="split documents into chunks of at most N tokens of the model's tokenizer; chunk "
        "ids are \"<id>#<n>\" and hits map back to the parent id. 'colmax index' records it in "
        "the index, so later adds, searches and servers chunk the same way (default: as the "
        "index records; a new index: no splitting)",
    )
    parser.add_argument(
        "--chunk-overlap",
        type=_non_negative_int,
        default=0,
        metavar="M",
        help="tokens shared by neighbouring chunks (default 0)",
    )


def add_pool_option(parser: argparse.ArgumentParser) -> None:
    """``--pool-factor``."""
    parser.add_argument(
        "--pool-factor",
        type=_positive_int,
        default=1,
        metavar="F",
        help="token pooling: store ceil(n/F) cluster means of each document's n token vectors "
        "(2 halves the index with little loss in quality; needs colmax[pooling]; "
        "default 1: every vector)",
    )


def _positive_int(text: str) -> int:
    value = _non_negative_int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def _non_negative_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"must not be negative, got {text!r}")
    return value


def read_input(args: argparse.Namespace) -> Iterator[Record]:
    """The records ``args.input`` holds, read as the ingest options say."""
    from colmax.ingest import read_documents

    fields = None
    if args.metadata_fields is not None:
        fields = [f.strip() for f in args.metadata_fields.split(",") if f.strip()]
    return read_documents(
        args.input,
        format=args.format,
        id_field=args.id_field,
        text_field=args.text_field,
        metadata_fields=fields,
    )


@dataclass
class WriteStats:
    """What :func:`write_records` did."""

    documents: int = 0
    entries: int = 0  # documents or chunks stored
    skipped: list[str] = field(default_factory=list)  # sources of empty documents
    seconds: float = 0.0


def write_records(
    engine: Engine,
    records: Iterable[Record],
    *,
    batch_size: int,
    progress: bool,
    pool_factor: int = 1,
) -> WriteStats:
    """Encode and commit ``records`` batch by batch, with one progress bar over documents.

    The engine splits documents into chunks when it chunks (``Engine(chunk_tokens=...)``).
    Empty documents are skipped (and counted): a blank line in a big file should not stop an
    hour of indexing. Each batch is one atomic commit, so an interruption keeps whole batches.
    """
    from tqdm.auto import tqdm

    stats = WriteStats()
    start = time.perf_counter()
    with tqdm(
        desc="Indexing", unit="doc", disable=True if not progress else None, leave=False
    ) as bar:
        for batch in _batches(records, batch_size):
            kept = [r for r in batch if r.text.strip()]
            stats.skipped += [r.source for r in batch if not r.text.strip()]
            if kept:
                written = engine.add(
                    [r.text for r in kept],
                    ids=[r.id for r in kept],
                    metadatas=[r.metadata for r in kept],
                    show_progress=False,
                    pool_factor=pool_factor,
                )
                stats.documents += len(kept)
                stats.entries += written.entries
            bar.update(len(batch))
    stats.seconds = time.perf_counter() - start
    return stats


def _batches(records: Iterable[Record], size: int) -> Iterator[list[Record]]:
    batch: list[Record] = []
    for record in records:
        batch.append(record)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def summary(stats: WriteStats, verb: str, folder: Path | str, chunked: bool) -> str:
    """One line saying what was written, plus a note on skipped empty documents."""
    what = f"{stats.documents} documents"
    if chunked:
        what += f" as {stats.entries} chunks"
    line = f"{verb} {what} in {folder} ({stats.seconds:.1f}s)"
    if stats.skipped:
        line += f"\nskipped {len(stats.skipped)} empty document(s), first at {stats.skipped[0]}"
    return line


def parse_filter(text: str | None) -> dict[str, Any] | None:
    """``--filter`` JSON as a dict (the engine checks the operators)."""
    if text is None:
        return None
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InvalidInputError(
            f"--filter is not valid JSON ({exc.msg} at column {exc.colno}); "
            'example: --filter \'{"year": {"$gte": 2020}}\''
        ) from None
    if not isinstance(value, dict):
        raise InvalidInputError(f"--filter must be a JSON object, got {type(value).__name__}")
    return value


def hit_json(hit: Hit) -> dict[str, Any]:
    """A hit as a JSON-ready dict (with ``explanation`` / ``scores`` when the hit has them)."""
    out: dict[str, Any] = {
        "id": hit.id,
        "score": hit.score,
        "rank": hit.rank,
        "text": hit.text,
        "metadata": hit.metadata,
    }
    if hit.scores is not None:
        out["scores"] = hit.scores
    if hit.explanation is not None:
        out["explanation"] = hit.explanation.to_dict()
    return out


def format_hits(hits: list[Hit], width: int = 100) -> str:
    """Hits as numbered lines: rank, id, score, a snippet; the chunk id for chunk hits."""
    if not hits:
        return "no results"
    lines = []
    for hit in hits:
        entry = entry_id(hit)
        where = f" ({entry})" if entry != hit.id else ""
        snippet = textwrap.shorten(hit.text, width, placeholder=" ...")
        score = f"score={hit.score:.3f}{side_scores(hit)}"
        lines.append(f"{hit.rank + 1:>3}. [{hit.id}]{where} {score}  {snippet}")
    return "\n".join(lines)


def side_scores(hit: Hit) -> str:
    """``" (late=.. bm25=..)"`` for a hybrid hit (the sides that returned it), else ``""``."""
    if not hit.scores:
        return ""
    return " (" + " ".join(f"{name}={value:.3f}" for name, value in hit.scores.items()) + ")"


def print_err(message: str) -> None:
    """A status line on stderr (keeps stdout for results)."""
    print(message, file=sys.stderr)
