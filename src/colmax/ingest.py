"""Read documents to index from files: JSONL, CSV/TSV, a BEIR corpus, or a folder of text files.

Every reader is a generator: records are yielded one at a time, so a corpus larger than memory
streams through. A malformed record raises :class:`IngestError` whose message starts with
``path:line:`` (or the file's path for folder input) and says what to change.

Examples:
    >>> import pathlib, tempfile
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (folder / "docs.jsonl").write_text('{"id": "a", "text": "hello", "year": 2024}\\n')
    >>> [(r.id, r.text, r.metadata) for r in read_documents(folder / "docs.jsonl")]
    [('a', 'hello', {'year': 2024})]
"""

from __future__ import annotations

import contextlib
import csv
import json
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from colmax.errors import InvalidInputError

__all__ = [
    "FORMATS",
    "IngestError",
    "Record",
    "beir_rows",
    "numbered_lines",
    "read_documents",
]

#: Input formats :func:`read_documents` understands (``"auto"`` guesses from the path).
FORMATS = ("auto", "jsonl", "csv", "tsv", "beir", "folder")
_TEXT_SUFFIXES = (".txt", ".md")
_ID_FALLBACKS = ("id", "_id")


class IngestError(InvalidInputError):
    """An input file is missing, unreadable or holds a malformed record (the message names it)."""


@dataclass(frozen=True)
class Record:
    """One document read from an input.

    Attributes:
        id: the document id (always a string).
        text: the document text, possibly empty (the caller decides whether to skip it).
        metadata: JSON-compatible metadata.
        source: where it came from, ``"path:line"`` or a file path, for error messages.
    """

    id: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)
    source: str = ""


def read_documents(
    path: str | Path,
    *,
    format: str = "auto",
    id_field: str | None = None,
    text_field: str = "text",
    metadata_fields: Sequence[str] | None = None,
    unique_ids: bool = True,
) -> Iterator[Record]:
    """Stream documents from a file or folder.

    Args:
        path: a ``.jsonl`` file (one JSON object a line), a ``.csv``/``.tsv`` file with a
            header row, a BEIR folder (``corpus.jsonl`` with ``_id``, ``title``, ``text``), or a
            folder of ``.txt``/``.md`` files (id = path relative to the folder). ``"-"`` reads
            JSONL from standard input.
        format: one of :data:`FORMATS`; ``"auto"`` decides from the suffix or folder contents.
        id_field: JSONL key / CSV column holding the id (default: ``"id"``, else ``"_id"``).
        text_field: key / column holding the text.
        metadata_fields: keys / columns kept as metadata (default: every other key / column).
        unique_ids: raise on an id seen earlier in the same input (otherwise the later record
            would silently replace the earlier one on upsert).

    Yields:
        :class:`Record` objects in input order.

    Raises:
        IngestError: missing file, unknown format, bad JSON, a record without an id or text,
            a duplicate id; the message names the file and line.
    """
    path_ = Path(path)
    kind = _detect(path_, format)
    if kind == "beir":
        records = _beir(path_)
    elif kind == "folder":
        records = _folder(path_)
    elif kind == "jsonl":
        records = _jsonl(path_, id_field, text_field, metadata_fields)
    else:
        records = _csv(path_, id_field, text_field, metadata_fields, "\t" if kind == "tsv" else ",")
    return _unique(records) if unique_ids else records


def _detect(path: Path, format: str) -> str:
    if format not in FORMATS:
        raise IngestError(f"unknown input format {format!r}; choose one of {list(FORMATS)}")
    if str(path) == "-":
        if format not in ("auto", "jsonl"):
            raise IngestError("standard input ('-') is read as JSONL only")
        return "jsonl"
    if not path.exists():
        raise IngestError(f"{path}: no such file or folder")
    if format != "auto":
        if (format in ("beir", "folder")) != path.is_dir():
            what = "a folder" if format in ("beir", "folder") else "a file"
            raise IngestError(f"{path}: format {format!r} needs {what}")
        return format
    if path.is_dir():
        return "beir" if (path / "corpus.jsonl").is_file() else "folder"
    suffix = path.suffix.lower()
    kinds = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".tsv": "tsv"}
    if suffix not in kinds:
        raise IngestError(
            f"{path}: cannot tell the format from the suffix {suffix!r}; "
            f"pass --format with one of {list(FORMATS[1:])}"
        )
    return kinds[suffix]


def _unique(records: Iterator[Record]) -> Iterator[Record]:
    seen: dict[str, str] = {}
    for record in records:
        first = seen.setdefault(record.id, record.source)
        if first != record.source:
            raise IngestError(
                f"{record.source}: duplicate id {record.id!r} (first seen at {first}); "
                "ids must be unique within one input"
            )
        yield record


def numbered_lines(path: Path) -> Iterator[tuple[int, str]]:
    """Numbered lines of a UTF-8 file (or stdin for ``-``), decoding errors located exactly.

    Lines are decoded one by one (not by a buffered text reader) so that a decoding error
    names the line it is on.
    """
    try:
        with (
            contextlib.nullcontext(sys.stdin.buffer) if str(path) == "-" else open(path, "rb")
        ) as handle:
            for n, raw in enumerate(handle, 1):
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise IngestError(f"{path}:{n}: not UTF-8 text ({exc.reason})") from exc
                yield n, line.removeprefix("\ufeff") if n == 1 else line
    except OSError as exc:
        raise IngestError(f"{path}: cannot read ({exc.strerror or exc})") from exc


def _jsonl(
    path: Path, id_field: str | None, text_field: str, metadata_fields: Sequence[str] | None
) -> Iterator[Record]:
    for n, line in numbered_lines(path):
        if not line.strip():
            continue
        where = f"{path}:{n}"
        yield _record(_json_object(line, where), where, id_field, text_field, metadata_fields)


def _json_object(line: str, where: str) -> dict[str, Any]:
    """The JSON object on one line, or an :class:`IngestError` located at ``where``."""
    try:
        row = json.loads(line)
    except json.JSONDecodeError as exc:
        raise IngestError(f"{where}: invalid JSON ({exc.msg} at column {exc.colno})") from exc
    if not isinstance(row, dict):
        raise IngestError(f"{where}: expected a JSON object, got {type(row).__name__}")
    return row


def _id_of(row: dict[str, Any], key: str, where: str, hint: str = "") -> str:
    """``row[key]`` as an id: a non-empty string or an integer (not a bool)."""
    if key not in row:
        raise IngestError(f"{where}: no id field {key!r}; keys present: {sorted(row)[:10]}{hint}")
    id_ = row[key]
    if id_ is None or id_ == "":
        raise IngestError(
            f"{where}: no id field {key!r} with a value: the id is empty "
            "(every record needs a non-empty id)"
        )
    if not isinstance(id_, (str, int)) or isinstance(id_, bool):
        raise IngestError(f"{where}: id {key!r} must be a string or integer, got {id_!r:.60}")
    return str(id_)


def _text_of(row: dict[str, Any], key: str, where: str, hint: str = "") -> str:
    """``row[key]`` as text (``null`` reads as empty); the field must be present."""
    if key not in row:
        raise IngestError(f"{where}: no text field {key!r}; keys present: {sorted(row)[:10]}{hint}")
    return _string_of(row, key, where)


def _string_of(row: dict[str, Any], key: str, where: str) -> str:
    """``row.get(key)`` as a string: missing or ``null`` reads as empty, other types are refused."""
    value = row.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise IngestError(f"{where}: {key!r} must be a string, got {type(value).__name__}")
    return value


def _record(
    row: dict[str, Any],
    where: str,
    id_field: str | None,
    text_field: str,
    metadata_fields: Sequence[str] | None,
) -> Record:
    key = id_field or next((k for k in _ID_FALLBACKS if k in row), _ID_FALLBACKS[0])
    id_ = _id_of(row, key, where, " (use --id-field)")
    text = _text_of(row, text_field, where, " (use --text-field)")
    if metadata_fields is None:
        metadata = {k: v for k, v in row.items() if k not in (key, text_field)}
    else:
        missing = [f for f in metadata_fields if f not in row]
        if missing:
            raise IngestError(f"{where}: metadata field(s) {missing} missing")
        metadata = {f: row[f] for f in metadata_fields}
    return Record(id_, text, metadata, where)


def _csv(
    path: Path,
    id_field: str | None,
    text_field: str,
    metadata_fields: Sequence[str] | None,
    delimiter: str,
) -> Iterator[Record]:
    csv.field_size_limit(2**31 - 1)  # long documents are the point; the default is 128 KiB
    lines = (line for _, line in numbered_lines(path))
    reader = csv.DictReader(lines, delimiter=delimiter, strict=True)
    try:
        header = reader.fieldnames
        if not header:
            raise IngestError(f"{path}: empty file (a header row with column names is needed)")
        repeated = next((c for c in header if header.count(c) > 1), None)
        if repeated is not None:
            raise IngestError(
                f"{path}:1: column {repeated!r} appears {header.count(repeated)} times in the "
                f"header {header}; column names must be unique (rename or drop the extra one)"
            )
        key = id_field or next((k for k in _ID_FALLBACKS if k in header), _ID_FALLBACKS[0])
        needed = [key, text_field, *(metadata_fields or [])]
        missing = [c for c in needed if c not in header]
        if missing:
            raise IngestError(
                f"{path}:1: column(s) {missing} not in the header {header}; "
                "use --id-field / --text-field / --metadata-fields"
            )
        for row in reader:
            where = f"{path}:{reader.line_num}"
            if None in row or any(v is None for v in row.values()):
                more = "more" if None in row else "fewer"
                raise IngestError(
                    f"{where}: {more} fields than the {len(header)} columns of the header "
                    "(an unquoted delimiter or newline inside a field?)"
                )
            yield _record(row, where, key, text_field, metadata_fields)
    except csv.Error as exc:
        raise IngestError(f"{path}:{reader.line_num}: malformed CSV ({exc})") from exc


def _beir(folder: Path) -> Iterator[Record]:
    """BEIR ``corpus.jsonl``: text is ``title + " " + text`` (as BEIR evaluation does)."""
    for row, doc_id, title, text, where in beir_rows(folder / "corpus.jsonl"):
        metadata: dict[str, Any] = {}
        if isinstance(row.get("metadata"), dict):
            metadata.update(row["metadata"])
        if title:
            metadata["title"] = title
        yield Record(doc_id, f"{title} {text}".strip(), metadata, where)


def beir_rows(path: Path) -> Iterator[tuple[dict[str, Any], str, str, str, str]]:
    """``(row, id, title, text, "path:line")`` for each line of a BEIR ``corpus.jsonl`` or
    ``queries.jsonl``: the one BEIR row reader, shared with :func:`colmax.beir.load_beir` so
    that ``colmax index`` and ``colmax eval`` accept the same files.

    The checks are those of the JSONL reader: ``_id`` a non-empty string or an integer,
    ``text`` present and a string (``null`` reads as empty), ``title`` a string if given.
    """
    hint = " (a BEIR line needs '_id' and 'text')"
    for n, line in numbered_lines(path):
        if not line.strip():
            continue
        where = f"{path}:{n}"
        row = _json_object(line, where)
        doc_id = _id_of(row, "_id", where, hint)
        text = _text_of(row, "text", where, hint)
        yield row, doc_id, _string_of(row, "title", where), text, where


def _folder(folder: Path) -> Iterator[Record]:
    """Every ``.txt``/``.md`` file under ``folder`` (hidden ones skipped), sorted by path."""
    files = sorted(
        p
        for p in folder.rglob("*")
        if p.suffix.lower() in _TEXT_SUFFIXES
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )
    if not files:
        raise IngestError(
            f"{folder}: no .txt or .md files found (and no corpus.jsonl, so not a BEIR folder)"
        )
    for file in files:
        rel = file.relative_to(folder).as_posix()
        try:
            text = file.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError as exc:
            raise IngestError(f"{file}: not UTF-8 text ({exc.reason})") from exc
        except OSError as exc:
            raise IngestError(f"{file}: cannot read ({exc.strerror or exc})") from exc
        yield Record(rel, text, {"path": rel}, str(file))
