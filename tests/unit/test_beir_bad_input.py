"""`colmax.beir.load_beir` (used by `colmax eval`) on malformed BEIR folders."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from colmax.beir import load_beir
from colmax.errors import InvalidInputError

CORPUS = [{"_id": "d1", "title": "Wings", "text": "lift"}, {"_id": 2, "text": "drag"}]
QUERIES = [{"_id": "q1", "text": "wings"}, {"_id": 2, "text": "drag"}]
QRELS = "query-id\tcorpus-id\tscore\nq1\td1\t1\n2\t2\t2\n"


def _write(
    folder: Path,
    corpus: str | bytes | None = None,
    queries: str | bytes | None = None,
    qrels: str | bytes | None = None,
) -> Path:
    (folder / "qrels").mkdir(parents=True)
    files = {
        folder / "corpus.jsonl": corpus
        if corpus is not None
        else "".join(json.dumps(d) + "\n" for d in CORPUS),
        folder / "queries.jsonl": queries
        if queries is not None
        else "".join(json.dumps(q) + "\n" for q in QUERIES),
        folder / "qrels" / "test.tsv": qrels if qrels is not None else QRELS,
    }
    for path, content in files.items():
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8")
    return folder


def test_good_folder(tmp_path: Path) -> None:
    data = load_beir(_write(tmp_path / "s"))
    assert data.corpus == {"d1": "Wings lift", "2": "drag"}
    assert data.queries == {"q1": "wings", "2": "drag"}
    assert data.qrels == {"q1": {"d1": 1}, "2": {"2": 2}}


def test_byte_order_marks_are_ignored(tmp_path: Path) -> None:
    bom = "\ufeff"
    folder = _write(
        tmp_path / "s",
        corpus=bom + json.dumps(CORPUS[0]) + "\n",
        queries=bom + json.dumps(QUERIES[0]) + "\n",
        qrels=bom + "q1\td1\t1\n",
    )
    data = load_beir(folder)
    assert data.corpus == {"d1": "Wings lift"}
    assert data.queries == {"q1": "wings"}
    assert data.qrels == {"q1": {"d1": 1}}


@pytest.mark.parametrize(
    ("which", "line", "message"),
    [
        ("corpus", '{"title": "t", "text": "x"}', r"corpus.jsonl:2: no id field '_id'"),
        ("corpus", '{"_id": null, "text": "x"}', r"corpus.jsonl:2: no id field '_id' with a value"),
        ("corpus", '{"_id": 1.5, "text": "x"}', r"corpus.jsonl:2: id '_id' must be a string or"),
        ("corpus", '{"_id": "d9", "text": ["a"]}', r"corpus.jsonl:2: 'text' must be a string"),
        ("corpus", '{"_id": "d9", "title": 3, "text": "a"}', r"corpus.jsonl:2: 'title' must be"),
        ("corpus", '"just a string"', r"corpus.jsonl:2: expected a JSON object, got str"),
        ("corpus", '{"_id": "d9", "text": ', r"corpus.jsonl:2: invalid JSON"),
        ("queries", '{"text": "x"}', r"queries.jsonl:2: no id field '_id'"),
        ("queries", '{"_id": "q9"}', r"queries.jsonl:2: no text field 'text'"),
        ("queries", '{"_id": "q9", "text": 7}', r"queries.jsonl:2: 'text' must be a string"),
        ("queries", "[1, 2]", r"queries.jsonl:2: expected a JSON object, got list"),
    ],
)
def test_bad_jsonl_rows_name_file_and_line(
    tmp_path: Path, which: str, line: str, message: str
) -> None:
    rows = CORPUS if which == "corpus" else QUERIES
    content = json.dumps(rows[0]) + "\n" + line + "\n"
    folder = _write(tmp_path / "s", **{which: content})  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match=message):
        load_beir(folder)


@pytest.mark.parametrize("which", ["corpus", "queries", "qrels"])
def test_non_utf8_byte_is_located(tmp_path: Path, which: str) -> None:
    if which == "qrels":
        content = b"q1\td1\t1\nq1\td\xff\t1\n"
        name = "test.tsv"
    else:
        first = json.dumps((CORPUS if which == "corpus" else QUERIES)[0]).encode()
        content = first + b'\n{"_id": "x", "text": "caf\xe9"}\n'
        name = f"{which}.jsonl"
    folder = _write(tmp_path / "s", **{which: content})  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match=rf"{name}:2: not UTF-8 text"):
        load_beir(folder)


@pytest.mark.parametrize("grade", ["1.0", "one", "", "0.5", "1e3", "²"])
def test_grade_must_be_an_integer(tmp_path: Path, grade: str) -> None:
    folder = _write(tmp_path / "s", qrels=f"query-id\tcorpus-id\tscore\nq1\td1\t1\n2\t2\t{grade}\n")
    with pytest.raises(InvalidInputError, match=r"test.tsv:3: relevance grade .* integer"):
        load_beir(folder)


def test_first_row_with_float_grade_is_not_taken_for_a_header(tmp_path: Path) -> None:
    folder = _write(tmp_path / "s", qrels="q1\td1\t1.0\n")
    with pytest.raises(InvalidInputError, match=r"test.tsv:1: relevance grade '1.0'"):
        load_beir(folder)


@pytest.mark.parametrize(("grade", "value"), [("1", 1), ("-1", -1), ("+2", 2), (" 3 ", 3)])
def test_integer_grades_are_accepted(tmp_path: Path, grade: str, value: int) -> None:
    folder = _write(tmp_path / "s", qrels=f"q1\td1\t{grade}\n")
    assert load_beir(folder).qrels == {"q1": {"d1": value}}


def test_short_qrels_row_is_refused(tmp_path: Path) -> None:
    folder = _write(tmp_path / "s", qrels="query-id\tcorpus-id\tscore\nq1\td1\n\n")
    with pytest.raises(InvalidInputError, match=r"test.tsv:2: expected 3 tab-separated"):
        load_beir(folder)


@pytest.mark.parametrize(
    ("which", "line", "first"),
    [
        ("corpus", '{"_id": "d1", "text": "replaced"}', 1),
        ("corpus", '{"_id": "2", "text": "the integer 2 read as a string"}', 2),
        ("queries", '{"_id": "q1", "text": "replaced"}', 1),
    ],
)
def test_repeated_id_is_refused_not_overwritten(
    tmp_path: Path, which: str, line: str, first: int
) -> None:
    # The second row silently replaced the first one's text; `colmax index` refuses it.
    rows = CORPUS if which == "corpus" else QUERIES
    content = "".join(json.dumps(r) + "\n" for r in rows) + line + "\n"
    folder = _write(tmp_path / "s", **{which: content})  # type: ignore[arg-type]
    with pytest.raises(
        InvalidInputError, match=rf"{which}.jsonl:3: duplicate _id .*jsonl:{first}\)"
    ):
        load_beir(folder)
