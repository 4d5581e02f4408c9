"""Reading BEIR-layout folders (colmax.beir) and sampling their judged queries."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from colmax.beir import BeirDataset, load_beir
from colmax.errors import InvalidInputError


def _write(folder: Path) -> Path:
    (folder / "qrels").mkdir(parents=True)
    docs = [{"_id": "d1", "title": "Wings", "text": "lift"}, {"_id": 2, "text": ""}]
    (folder / "corpus.jsonl").write_text("\n".join(json.dumps(d) for d in docs) + "\n")
    queries = [{"_id": f"q{i}", "text": f"query {i}"} for i in range(1, 6)]
    (folder / "queries.jsonl").write_text("\n".join(json.dumps(q) for q in queries) + "\n")
    rows = ["query-id\tcorpus-id\tscore", "q1\td1\t2", "q2\td1\t0", "q4\t2\t1", "q5\td1\t-1"]
    (folder / "qrels" / "test.tsv").write_text("\n".join(rows) + "\n")
    return folder


def test_load_beir_reads_the_three_files(tmp_path: Path) -> None:
    data = load_beir(_write(tmp_path / "set"))
    assert data.corpus == {"d1": "Wings lift", "2": ""}
    assert list(data.queries) == ["q1", "q2", "q3", "q4", "q5"]
    assert data.qrels == {"q1": {"d1": 2}, "q2": {"d1": 0}, "q4": {"2": 1}, "q5": {"d1": -1}}
    assert list(data.judged_queries()) == ["q1", "q2", "q4", "q5"]  # q3 has no judgement


def test_every_nth_judged_keeps_those_queries_and_their_judgements(tmp_path: Path) -> None:
    data = load_beir(_write(tmp_path / "set"))
    sub = data.every_nth_judged(2)
    assert sub.queries == {"q1": "query 1", "q4": "query 4"}
    assert sub.qrels == {"q1": {"d1": 2}, "q4": {"2": 1}}
    assert sub.corpus is data.corpus
    assert data.every_nth_judged(1).queries == data.judged_queries()
    assert list(data.every_nth_judged(10).queries) == ["q1"]


@pytest.mark.parametrize("n", [0, -2, 1.5, True, "2"])
def test_every_nth_judged_rejects_a_bad_step(n: object) -> None:
    data = BeirDataset({}, {"q": "x"}, {"q": {"d": 1}})
    with pytest.raises(InvalidInputError, match="positive integer"):
        data.every_nth_judged(n)  # type: ignore[arg-type]


def test_a_folder_without_judgements_is_refused(tmp_path: Path) -> None:
    folder = _write(tmp_path / "set")
    (folder / "qrels" / "test.tsv").unlink()
    with pytest.raises(InvalidInputError, match="not a BEIR data set folder"):
        load_beir(folder)
