"""Reading documents from JSONL, CSV/TSV, BEIR folders and folders of text files."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest

from colmax.ingest import IngestError, Record, read_documents


def write(path: Path, text: str | bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def rows(path: Path, **kwargs: object) -> list[tuple[str, str, dict]]:
    return [(r.id, r.text, r.metadata) for r in read_documents(path, **kwargs)]  # type: ignore[arg-type]


# ---------------------------------------------------------------- JSONL


def test_jsonl_ids_text_and_metadata(tmp_path: Path) -> None:
    path = write(
        tmp_path / "d.jsonl",
        '{"id": 7, "text": "seven", "year": 2024, "tags": ["a"]}\n'
        "\n"
        '{"id": "x", "text": "ex", "nested": {"k": 1}}\r\n',
    )
    assert rows(path) == [
        ("7", "seven", {"year": 2024, "tags": ["a"]}),
        ("x", "ex", {"nested": {"k": 1}}),
    ]
    records = list(read_documents(path))
    assert records[1].source == f"{path}:3"  # blank lines still count


def test_jsonl_field_options(tmp_path: Path) -> None:
    path = write(tmp_path / "d.jsonl", '{"_id": "a", "body": "t", "year": 1, "lang": "en"}\n')
    assert rows(path, text_field="body") == [("a", "t", {"year": 1, "lang": "en"})]
    assert rows(path, text_field="body", metadata_fields=["lang"]) == [("a", "t", {"lang": "en"})]
    assert rows(path, id_field="lang", text_field="body", metadata_fields=[]) == [("en", "t", {})]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"id": "b", "text": "x"', "invalid JSON"),
        ('["id", "text"]', "expected a JSON object, got list"),
        ('{"text": "no id"}', "no id field 'id'"),
        ('{"id": "b", "body": "x"}', "no text field 'text'"),
        ('{"id": "b", "text": 5}', "'text' must be a string"),
        ('{"id": [1], "text": "x"}', "must be a string or integer"),
        ('{"id": "a", "text": "again"}', r"duplicate id 'a' \(first seen at"),
    ],
)
def test_jsonl_errors_name_file_and_line(tmp_path: Path, line: str, message: str) -> None:
    path = write(tmp_path / "d.jsonl", '{"id": "a", "text": "fine"}\n\n' + line + "\n")
    records = read_documents(path)
    assert next(records).id == "a"  # streaming: the first record comes before the bad one
    with pytest.raises(IngestError, match=message) as info:
        next(records)
    assert str(info.value).startswith(f"{path}:3: ")


def test_non_utf8_is_reported_on_its_own_line(tmp_path: Path) -> None:
    # A first line longer than a read buffer: the line number must still be exact.
    lines = [json.dumps({"id": i, "text": "x" * 20000}).encode() + b"\n" for i in "ab"]
    path = write(tmp_path / "d.jsonl", b"".join(lines) + b'{"id": "c", "text": "caf\xe9"}\n')
    with pytest.raises(IngestError, match=r"d\.jsonl:3: not UTF-8"):
        list(read_documents(path))


def test_byte_order_mark_is_ignored(tmp_path: Path) -> None:
    path = write(tmp_path / "d.jsonl", '\ufeff{"id": "a", "text": "x"}\n')
    assert rows(path) == [("a", "x", {})]


def test_stdin_is_jsonl(monkeypatch: pytest.MonkeyPatch) -> None:
    data = b'{"id": "s", "text": "from stdin"}\n'
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(data)))
    assert [r.id for r in read_documents("-")] == ["s"]
    with pytest.raises(IngestError, match="JSONL only"):
        read_documents("-", format="csv")


def test_duplicates_allowed_when_asked(tmp_path: Path) -> None:
    path = write(tmp_path / "d.jsonl", '{"id": "a", "text": "1"}\n{"id": "a", "text": "2"}\n')
    assert [r.text for r in read_documents(path, unique_ids=False)] == ["1", "2"]


# ---------------------------------------------------------------- CSV / TSV


def test_csv_with_quoted_newlines_and_metadata_columns(tmp_path: Path) -> None:
    path = write(
        tmp_path / "d.csv",
        'id,text,lang,year\na,"line one\nline two",en,2024\nb,"comma, inside",de,2023\n',
    )
    assert rows(path) == [
        ("a", "line one\nline two", {"lang": "en", "year": "2024"}),
        ("b", "comma, inside", {"lang": "de", "year": "2023"}),
    ]
    assert [r.source for r in read_documents(path)] == [f"{path}:3", f"{path}:4"]
    assert rows(path, metadata_fields=["lang"])[0][2] == {"lang": "en"}


def test_tsv_and_custom_columns(tmp_path: Path) -> None:
    path = write(tmp_path / "d.tsv", "doc\tbody\nq1\thello there\n")
    assert rows(path, id_field="doc", text_field="body") == [("q1", "hello there", {})]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "empty file"),
        ("id,body\na,x\n", r"column\(s\) \['text'\] not in the header"),
        ("id,text\na,x,extra\n", ":2: more fields than the 2 columns"),
        ("id,text\na\n", ":2: fewer fields than the 2 columns"),
        ("id,text\n,x\n", ":2: no id field 'id'"),
    ],
)
def test_csv_errors(tmp_path: Path, content: str, message: str) -> None:
    path = write(tmp_path / "d.csv", content)
    with pytest.raises(IngestError, match=message):
        list(read_documents(path))


# ---------------------------------------------------------------- BEIR and folders


def test_beir_folder(tmp_path: Path) -> None:
    write(
        tmp_path / "beir" / "corpus.jsonl",
        '{"_id": "d1", "title": "Title", "text": "body", "metadata": {"url": "u"}}\n'
        '{"_id": "d2", "title": "", "text": "only body"}\n',
    )
    assert rows(tmp_path / "beir") == [
        ("d1", "Title body", {"url": "u", "title": "Title"}),
        ("d2", "only body", {}),
    ]


def test_folder_of_text_files(tmp_path: Path) -> None:
    root = tmp_path / "notes"
    write(root / "b.md", "# B\nbee")
    write(root / "a.txt", "ay")
    write(root / "sub" / "c.TXT", "see")
    write(root / "skip.pdf", "binary")
    write(root / ".hidden" / "d.txt", "hidden")
    write(root / ".e.md", "hidden too")
    assert rows(root) == [
        ("a.txt", "ay", {"path": "a.txt"}),
        ("b.md", "# B\nbee", {"path": "b.md"}),
        ("sub/c.TXT", "see", {"path": "sub/c.TXT"}),
    ]


def test_folder_errors(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(IngestError, match=r"no \.txt or \.md files"):
        list(read_documents(tmp_path / "empty"))
    write(tmp_path / "bad" / "x.txt", b"\xff\xfe\xfa")
    with pytest.raises(IngestError, match=r"x\.txt: not UTF-8"):
        list(read_documents(tmp_path / "bad"))


# ---------------------------------------------------------------- format detection


def test_format_detection_errors(tmp_path: Path) -> None:
    with pytest.raises(IngestError, match="no such file or folder"):
        read_documents(tmp_path / "missing.jsonl")
    with pytest.raises(IngestError, match="cannot tell the format"):
        read_documents(write(tmp_path / "d.json", "{}"))
    with pytest.raises(IngestError, match="unknown input format"):
        read_documents(tmp_path, format="xml")
    with pytest.raises(IngestError, match="needs a folder"):
        read_documents(write(tmp_path / "d.txt", "x"), format="beir")
    # an explicit format overrides the suffix
    path = write(tmp_path / "d.data", '{"id": "a", "text": "x"}\n')
    assert rows(path, format="jsonl") == [("a", "x", {})]


def test_record_is_immutable() -> None:
    record = Record("a", "t")
    with pytest.raises(AttributeError):
        record.id = "b"  # type: ignore[misc]
