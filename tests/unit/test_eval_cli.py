"""``colmax eval`` and :func:`colmax.evaluation.run_eval` on a tiny BEIR folder."""

from __future__ import annotations

import argparse
import hashlib
import json
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest
import torch

from colmax.cli.eval import register
from colmax.cli.eval import run as run_cli
from colmax.errors import InvalidInputError
from colmax.evaluation import EvalReport, run_eval, score_run

pytest.importorskip("ir_measures")

DOCS = {
    "d1": ("Wings", "lift and drag on a swept wing at high speed"),
    "d2": ("Boundary", "laminar boundary layer separation on a flat plate"),
    "d3": ("Heat", "heat transfer to a blunt body in hypersonic flow"),
    "d4": ("Shocks", "shock wave interaction with a turbulent boundary layer"),
    "d5": ("", "   "),  # empty after title + text: skipped, as in Cranfield
    "d6": ("Panels", "flutter of thin panels in supersonic flow"),
}
QUERIES = {
    "q1": "lift and drag on a swept wing at high speed",
    "q2": "flutter of thin panels in supersonic flow",
    "q3": "heat transfer to a blunt body in hypersonic flow",
    "q9": "a query nobody judged",
}
QRELS = [("q1", "d1", 2), ("q1", "d4", 1), ("q2", "d6", 1), ("q3", "d3", 3), ("q3", "d2", 0)]


def write_beir(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    with (folder / "corpus.jsonl").open("w", encoding="utf-8") as f:
        for i, (title, text) in DOCS.items():
            f.write(json.dumps({"_id": i, "title": title, "text": text}) + "\n")
    with (folder / "queries.jsonl").open("w", encoding="utf-8") as f:
        for i, text in QUERIES.items():
            f.write(json.dumps({"_id": i, "text": text}) + "\n")
    (folder / "qrels").mkdir(exist_ok=True)
    lines = ["query-id\tcorpus-id\tscore"] + [f"{q}\t{d}\t{s}" for q, d, s in QRELS]
    (folder / "qrels" / "test.tsv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


class WordEncoder:
    """One hash-seeded unit vector per word: identical texts get identical token sets, so a
    query that repeats a document's words finds that document first (a model boundary
    stand-in; run_eval itself is what the tests exercise)."""

    name = "word-hash"
    dim = 16

    def _vectors(self, texts: Sequence[str]) -> list[torch.Tensor]:
        out = []
        for text in texts:
            rows = []
            for word in text.lower().split():
                seed = int(hashlib.sha256(word.encode()).hexdigest()[:8], 16)
                rows.append(torch.randn(self.dim, generator=torch.Generator().manual_seed(seed)))
            matrix = torch.stack(rows)
            out.append(matrix / matrix.norm(dim=1, keepdim=True))
        return out

    def encode_queries(self, texts: Sequence[str], **_: Any) -> list[torch.Tensor]:
        return self._vectors(texts)

    def encode_documents(self, texts: Sequence[str], **_: Any) -> list[torch.Tensor]:
        return self._vectors(texts)

    def config(self) -> dict[str, Any]:
        return {"model_name_or_path": self.name}


@pytest.fixture
def beir(tmp_path: Path) -> Path:
    return write_beir(tmp_path / "tiny-beir")


def _ndcg(gains_in_rank_order: list[int], ideal: list[int], k: int = 10) -> float:
    dcg = sum(g / math.log2(i + 2) for i, g in enumerate(gains_in_rank_order[:k]))
    idcg = sum(g / math.log2(i + 2) for i, g in enumerate(sorted(ideal, reverse=True)[:k]))
    return dcg / idcg


def test_run_eval_known_answers(beir: Path) -> None:
    report = run_eval(beir, WordEncoder())
    assert report.documents == 5  # d5 is empty
    assert report.queries == 3  # q9 has no judgement
    assert set(report.run) == {"q1", "q2", "q3"}
    # Every query repeats its best document's words: that document ranks first.
    for qid, best in (("q1", "d1"), ("q2", "d6"), ("q3", "d3")):
        ranked = sorted(report.run[qid], key=report.run[qid].__getitem__, reverse=True)
        assert ranked[0] == best
    assert report.metrics["RR@10"] == pytest.approx(1.0)
    assert report.metrics["R@100"] == pytest.approx(1.0)  # 5 documents, all retrieved
    # q1 also judges d4 (grade 1): nDCG@10 of q1 depends on where d4 lands.
    ranked_q1 = sorted(report.run["q1"], key=report.run["q1"].__getitem__, reverse=True)
    grades = {"d1": 2, "d4": 1}
    q1 = _ndcg([grades.get(d, 0) for d in ranked_q1], [2, 1])
    assert report.metrics["nDCG@10"] == pytest.approx((q1 + 1.0 + 1.0) / 3, abs=1e-6)


def test_run_eval_timings_and_disk(beir: Path, tmp_path: Path) -> None:
    keep = tmp_path / "kept-index"
    report = run_eval(beir, WordEncoder(), index_dir=keep, max_queries=2)
    assert report.queries == 2
    t = report.timing
    for name in ("encode_docs_per_s", "encode_queries_per_s", "queries_per_s"):
        assert t[name] > 0
    assert 0 < t["search_ms_p50"] <= t["search_ms_p95"]
    assert report.tokens == sum(len(f"{a} {b}".split()) for a, b in DOCS.values())
    on_disk = sum(p.stat().st_size for p in keep.rglob("*") if p.is_file())
    assert report.index_bytes == on_disk > report.tokens * 16 * 2  # float16 vectors at least


def test_score_run_counts_unanswered_queries_as_zero() -> None:
    qrels = {"a": {"x": 1}, "b": {"y": 1}}
    assert score_run(qrels, {"a": {"x": 1.0}}) == pytest.approx(
        {"nDCG@10": 0.5, "R@100": 0.5, "RR@10": 0.5}
    )
    graded = score_run({"a": {"x": 3, "y": 1}}, {"a": {"y": 2.0, "x": 1.0}}, k=1)
    assert graded["nDCG@1"] == pytest.approx(1 / 3)
    assert graded["RR@1"] == pytest.approx(1.0)  # grade 1 is relevant too


def test_cli_writes_table_and_json(
    beir: Path, tiny_colbert_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "reports" / "tiny.json"
    args = _parse(["eval", str(beir), "--model", str(tiny_colbert_model), "--json", str(out)])
    assert args.func(args) == 0
    printed = capsys.readouterr().out
    for label in ("nDCG@10", "R@100", "RR@10", "encode docs/s", "search ms p50/p95", "index bytes"):
        assert label in printed
    payload = json.loads(out.read_text(encoding="utf-8"))
    assert payload["documents"] == 5 and payload["queries"] == 3 and payload["index"] == "flat"
    assert set(payload["metrics"]) == {"nDCG@10", "R@100", "RR@10"}
    assert all(0.0 <= v <= 1.0 for v in payload["metrics"].values())
    assert payload["index_bytes"] > 0 and "run" not in payload
    assert payload["model"] == str(tiny_colbert_model)


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="colmax")
    register(parser.add_subparsers(dest="command", required=True))
    return parser.parse_args(argv)


def test_cli_parser_options(beir: Path) -> None:
    args = _parse(
        ["eval", str(beir), "--model", "m", "--k", "5", "--index", "flat", "--max-queries", "2"]
    )
    assert args.func is run_cli and args.k == 5 and args.max_queries == 2
    assert _parse(["eval", str(beir), "--model", "m"]).index == "flat"
    with pytest.raises(SystemExit):
        _parse(["eval", str(beir), "--model", "m", "--index", "annoy"])
    with pytest.raises(SystemExit):
        _parse(["eval", str(beir)])  # --model is required


def test_cli_json_includes_run_on_request(beir: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    args = _parse(["eval", str(beir), "--model", "unused", "--json", str(out), "--run"])
    args.model = WordEncoder()  # run() hands the model straight to run_eval
    assert run_cli(args) == 0
    payload = json.loads(out.read_text(encoding="utf-8"))
    assert set(payload["run"]) == {"q1", "q2", "q3"}


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"k": 0}, "k must be"), ({"max_queries": -1}, "max_queries"), ({"k": True}, "k must")],
    ids=["k-zero", "max-queries-negative", "k-bool"],
)
def test_run_eval_rejects_bad_arguments(beir: Path, kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        run_eval(beir, WordEncoder(), **kwargs)


def test_not_a_beir_folder(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="corpus.jsonl"):
        run_eval(tmp_path, WordEncoder())
    # The CLI raises the same ColmaxError (colmax.cli.main turns it into exit code 2) before
    # loading any model.
    args = _parse(["eval", str(tmp_path), "--model", "/no/such/model"])
    with pytest.raises(InvalidInputError, match="not a BEIR data set folder"):
        args.func(args)


def test_no_judged_query(beir: Path) -> None:
    (beir / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n", encoding="utf-8")
    with pytest.raises(InvalidInputError, match="no query"):
        run_eval(beir, WordEncoder())


def test_report_table_lists_every_number() -> None:
    report = EvalReport(
        data="d",
        model="m",
        index="flat",
        k=10,
        documents=1200,
        tokens=34567,
        queries=3,
        metrics={"nDCG@10": 0.5, "R@100": 1.0, "RR@10": 0.25},
        timing={
            "encode_seconds": 2.0,
            "encode_docs_per_s": 600.0,
            "index_seconds": 0.5,
            "encode_queries_per_s": 90.0,
            "search_ms_p50": 1.5,
            "search_ms_p95": 3.25,
            "search_ms_mean": 2.0,
            "queries_per_s": 80.0,
        },
        index_bytes=None,
    )
    table = report.table()
    assert "1,200 (34,567 token vectors)" in table
    assert "0.2500" in table and "1.50 / 3.25" in table and "n/a" in table
    assert json.loads(json.dumps(report.to_json()))["metrics"]["R@100"] == 1.0
