"""`colmax demo` end to end on a small BEIR folder with the real MiniLM weights."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from colmax import Engine
from colmax.cli import main


def write_beir(folder: Path) -> None:
    docs = {
        "d1": ("Boundary layers", "the boundary layer separates at high angles of attack"),
        "d2": ("Heat transfer", "heat transfer in hypersonic flow over blunt bodies"),
        "d3": ("Empty", ""),
        "d4": ("Buckling", "buckling of thin cylindrical shells under axial compression"),
    }
    (folder / "qrels").mkdir(parents=True)
    with (folder / "corpus.jsonl").open("w") as f:
        for i, (title, text) in docs.items():
            f.write(
                json.dumps({"_id": i, "title": title if i != "d3" else "", "text": text}) + "\n"
            )
    with (folder / "queries.jsonl").open("w") as f:
        f.write(json.dumps({"_id": "q1", "text": "heat transfer at hypersonic speed"}) + "\n")
        f.write(json.dumps({"_id": "q2", "text": "shell buckling under compression"}) + "\n")
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td2\t2\nq2\td4\t1\n")


def test_demo_indexes_answers_and_saves(
    tmp_path: Path, minilm_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_beir(tmp_path / "data")
    code = main(
        [
            "demo",
            "--data",
            str(tmp_path / "data"),
            "--model",
            str(minilm_path),
            "--out",
            str(tmp_path / "idx"),
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert "indexed 3 documents" in out  # the empty document is skipped, not fatal
    assert "Q: heat transfer at hypersonic speed" in out and "1. [d2]" in out
    assert "nDCG@10=1.0000" in out
    assert len(Engine.load(tmp_path / "idx", device="cpu")) == 3


def test_demo_without_data_says_what_to_do(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["demo", "--data", str(tmp_path / "nothing")])
    assert code == 2  # bad input: every ColmaxError exits 2
    assert "corpus.jsonl is missing" in capsys.readouterr().err
