"""Malformed input that `colmax index` must refuse with a located message (BEIR corpus, CSV)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from colmax.cli import main
from colmax.errors import InvalidInputError
from colmax.ingest import IngestError, read_documents


def _corpus(folder: Path, *lines: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "corpus.jsonl").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    return folder


GOOD = json.dumps({"_id": "d1", "title": "T", "text": "the cat"})


# ---------------------------------------------------------------- BEIR corpus (bug 1)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"_id": null, "text": "x"}', r"corpus.jsonl:2: no id field '_id' with a value"),
        ('{"_id": "", "text": "x"}', r"corpus.jsonl:2: no id field '_id' with a value"),
        ('{"_id": 1.5, "text": "x"}', r"corpus.jsonl:2: id '_id' must be a string or integer"),
        ('{"_id": true, "text": "x"}', r"corpus.jsonl:2: id '_id' must be a string or integer"),
        ('{"_id": {"a": 1}, "text": "x"}', r":2: id '_id' must be a string or integer"),
        ('{"_id": "d2", "text": ["the", "dog"]}', r":2: 'text' must be a string, got list"),
        ('{"_id": "d2", "text": {"a": 1}}', r":2: 'text' must be a string, got dict"),
        ('{"_id": "d2", "title": 5, "text": "x"}', r":2: 'title' must be a string, got int"),
        ('{"_id": "d2", "title": "t"}', r":2: no text field 'text'"),
        ('{"text": "x"}', r":2: no id field '_id'; keys present: \['text'\]"),
        ('["_id", "text"]', r":2: expected a JSON object, got list"),
    ],
)
def test_beir_corpus_checks_id_title_and_text(tmp_path: Path, line: str, message: str) -> None:
    folder = _corpus(tmp_path / "beir", GOOD, line)
    with pytest.raises(IngestError, match=message):
        list(read_documents(folder))


def test_beir_corpus_good_rows_unchanged(tmp_path: Path) -> None:
    folder = _corpus(
        tmp_path / "beir",
        '{"_id": 7, "title": null, "text": "seven"}',
        '{"_id": "d2", "text": null, "title": "only title"}',
        '{"_id": "d3", "text": "body"}',
    )
    assert [(r.id, r.text, r.metadata) for r in read_documents(folder)] == [
        ("7", "seven", {}),
        ("d2", "only title", {"title": "only title"}),
        ("d3", "body", {}),
    ]


@pytest.mark.parametrize(
    "line", ['{"_id": null, "text": "x"}', '{"_id": "d9", "text": {"a": 1}}', '{"_id": 5.0}']
)
def test_index_beir_with_bad_row_exits_2_and_writes_nothing(
    tiny_colbert_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], line: str
) -> None:
    good = [json.dumps({"_id": f"d{i}", "text": f"the cat {i}"}) for i in range(5)]
    folder = _corpus(tmp_path / "beir", *good, line)
    out = tmp_path / "idx"
    argv = ["index", str(folder), "--model", str(tiny_colbert_model), "--out", str(out)]
    assert main([*argv, "--batch-size", "2", "-q"]) == 2
    err = capsys.readouterr().err
    assert f"{folder / 'corpus.jsonl'}:6:" in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["beir"]


# ---------------------------------------------------------------- CSV messages (bug 3)


@pytest.mark.parametrize("content", ["id,text\n,x\n", 'id,text\n"",x\n'])
def test_csv_empty_id_says_the_id_is_empty(tmp_path: Path, content: str) -> None:
    path = tmp_path / "d.csv"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(IngestError) as info:
        list(read_documents(path))
    message = str(info.value)
    assert message.startswith(f"{path}:2: ")
    assert "the id is empty" in message and "keys present" not in message


def test_jsonl_null_id_says_the_id_is_empty(tmp_path: Path) -> None:
    path = tmp_path / "d.jsonl"
    path.write_text('{"id": null, "text": "x"}\n', encoding="utf-8")
    with pytest.raises(IngestError, match=r":1: .*the id is empty"):
        list(read_documents(path))


@pytest.mark.parametrize(
    ("header", "column"),
    [("id,text,text", "text"), ("id,id,text", "id"), ("id,text,lang,lang", "lang")],
)
def test_csv_repeated_column_is_refused(tmp_path: Path, header: str, column: str) -> None:
    path = tmp_path / "d.csv"
    cells = ",".join(f"v{i}" for i in range(header.count(",") + 1))
    path.write_text(f"{header}\n{cells}\n", encoding="utf-8")
    with pytest.raises(InvalidInputError, match=rf"{path.name}:1: column {column!r} appears"):
        list(read_documents(path))


def test_tsv_repeated_column_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "d.tsv"
    path.write_text("id\ttext\ttext\na\tx\ty\n", encoding="utf-8")
    with pytest.raises(IngestError, match=r":1: column 'text' appears 2 times"):
        list(read_documents(path))
