"""`colmax search`, `info`, `delete`, the help text and the exit codes, run in-process."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from colmax import Engine
from colmax.cli import build_parser, main

TEXTS = {
    "cat": ("the cat sat on the mat", {"year": 2020}),
    "paris": ("paris is the capital of france", {"year": 2024}),
    "car": ("a big red car", {"year": 2022}),
}


@pytest.fixture(scope="module")
def built(tiny_colbert_model: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("cli") / "idx"
    with Engine.from_pretrained(tiny_colbert_model, device="cpu", path=path) as engine:
        engine.add(
            [t for t, _ in TEXTS.values()],
            ids=list(TEXTS),
            metadatas=[m for _, m in TEXTS.values()],
        )
    return path


@pytest.fixture()
def index(built: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(built, tmp_path / "idx"))


def test_search_json_matches_the_engine(built: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert (
        main(["search", str(built), "capital of france", "cat on a mat", "--json", "-k", "2"]) == 0
    )
    lines = capsys.readouterr().out.splitlines()
    results = [json.loads(line) for line in lines]
    with Engine.load(built, device="cpu") as engine:
        expected = engine.search(["capital of france", "cat on a mat"], k=2)
    for result, hits in zip(results, expected):
        assert [h["id"] for h in result["hits"]] == [h.id for h in hits]  # type: ignore[union-attr]
        assert result["hits"][0]["score"] == pytest.approx(hits[0].score)  # type: ignore[index]
    assert results[0]["query"] == "capital of france"


def test_search_text_output_and_filter(built: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["search", str(built), "anything", "--filter", '{"year": {"$gte": 2022}}']) == 0
    out = capsys.readouterr().out
    assert "[paris]" in out and "[car]" in out and "[cat]" not in out
    assert out.splitlines()[0].startswith("  1. [")
    assert main(["search", str(built), "anything", "--filter", '{"year": 1}']) == 0
    assert capsys.readouterr().out.strip() == "no results"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--filter", "{bad"], "--filter is not valid JSON"),
        (["--filter", "[1]"], "--filter must be a JSON object"),
        (["--filter", '{"year": {"$near": 1}}'], "$near"),
        (["-k", "0"], "k must be"),
    ],
)
def test_search_errors_exit_2(
    built: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert main(["search", str(built), "query", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("colmax search: error: ") and message in err
    assert "Traceback" not in err


def test_search_a_folder_that_is_not_an_index(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["search", str(tmp_path), "query"]) == 2
    assert "not a colmax index" in capsys.readouterr().err


def test_search_explain_prints_highlighted_text(
    built: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    query = "capital of france"
    assert main(["search", str(built), query, "--explain", "-k", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    with Engine.load(built, device="cpu") as engine:
        hits = engine.search(query, k=3)
        expected = [engine.explain(query, h.id) for h in hits]
    assert len(lines) == 6  # a header and the highlighted text per hit
    for i, (hit, e) in enumerate(zip(hits, expected)):
        assert lines[2 * i] == f"{i + 1:>3}. [{hit.id}] score={hit.score:.3f}"
        # capsys is not a terminal: no ANSI codes, matches as [word], the passage as »...«
        assert lines[2 * i + 1] == "     " + e.to_terminal(color=False, width=400)
        assert "\x1b" not in lines[2 * i + 1] and "[" in lines[2 * i + 1]


def test_search_explain_json(built: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["search", str(built), "a red car", "--explain", "--json", "-k", "2"]) == 0
    result = json.loads(capsys.readouterr().out)
    for hit in result["hits"]:
        e = hit["explanation"]
        assert e["id"] == hit["id"] and e["query"] == "a red car"
        assert e["score"] == pytest.approx(hit["score"], abs=5e-3)
        assert e["score"] == pytest.approx(sum(m["similarity"] for m in e["matches"]), abs=1e-4)
    assert main(["search", str(built), "a red car", "--json"]) == 0
    assert all("explanation" not in h for h in json.loads(capsys.readouterr().out)["hits"])


@pytest.mark.parametrize("mode", ["rrf", "minmax", "rerank"])
def test_search_hybrid_matches_the_engine(
    index: Path, capsys: pytest.CaptureFixture[str], mode: str
) -> None:
    query = "the capital of france"
    argv = ["search", str(index), query, "--hybrid", mode, "--json", "--chunks"]
    assert main([*argv, "--candidates", "2", "--weight", "0.7"]) == 0
    hits = json.loads(capsys.readouterr().out)["hits"]
    with Engine.load(index, device="cpu") as engine:
        expected = engine.search(query, hybrid=mode, candidates=2, weight=0.7)
    assert [(h["id"], h["score"], h["scores"]) for h in hits] == [
        (h.id, pytest.approx(h.score), h.scores)
        for h in expected  # type: ignore[union-attr]
    ]
    assert "bm25" in hits[0]["scores"] or mode != "rerank"
    assert (index / "bm25" / "colmax-bm25.json").is_file()
    argv = ["search", str(index), "a cat in the capital", "--hybrid", mode]
    assert main([*argv, "--filter", '{"year": 2020}']) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 and out[0].startswith("  1. [cat] score=")
    assert "(late=" in out[0] and " bm25=" in out[0]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--candidates", "5"], "--candidates and --weight go with --hybrid"),
        (["--hybrid", "rrf", "--weight", "2"], "weight must be"),
        (["--hybrid", "rrf", "--candidates", "0"], "candidates must be"),
    ],
)
def test_search_hybrid_errors_exit_2(
    index: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert main(["search", str(index), "query", *args]) == 2
    assert message in capsys.readouterr().err
    assert not (index / "bm25").exists()


def test_info(built: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["info", str(built), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["documents"] == 3 and info["dim"] == 16
    assert main(["info", str(built)]) == 0
    out = capsys.readouterr().out
    assert "documents:       3" in out and "format:          colbert" in out


def test_delete_ids_and_ids_file(index: Path, tmp_path: Path) -> None:
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text("car\n\n")
    assert main(["delete", str(index), "cat", "--ids-from", str(ids_file), "-q"]) == 0
    with Engine.load(index, device="cpu") as engine:  # the model still loads afterwards
        assert engine.ids() == ["paris"]
        assert engine.search("cat", k=5)[0].id == "paris"  # type: ignore[union-attr]


def test_ids_file_lines_are_ids_as_written(index: Path, tmp_path: Path) -> None:
    # Each line was stripped: " cat" (an id of its own, edge spaces are valid) deleted "cat".
    with Engine(path=index) as engine:
        engine.add(embeddings=[np.ones((2, 16), np.float32)], ids=[" cat"])
    ids_file = tmp_path / "ids.txt"
    ids_file.write_text(" cat\r\n   \n")  # CRLF line end; a blank line is skipped
    assert main(["delete", str(index), "--ids-from", str(ids_file), "-q"]) == 0
    with Engine(path=index) as engine:
        assert sorted(engine.ids()) == ["car", "cat", "paris"]


def test_delete_unknown_id_changes_nothing(index: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["delete", str(index), "cat", "nope"]) == 2
    assert "nope" in capsys.readouterr().err
    assert main(["delete", str(index)]) == 2
    assert "no ids given" in capsys.readouterr().err
    with Engine(path=index) as engine:
        assert sorted(engine.ids()) == ["car", "cat", "paris"]


def test_delete_needs_an_index(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["delete", str(tmp_path), "x"]) == 2
    assert "not a colmax index folder" in capsys.readouterr().err


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    for command in ("index", "add", "delete", "search", "info", "serve", "mcp", "demo"):
        assert f"    {command} " in out
    parser = build_parser()
    sub = next(a for a in parser._actions if a.dest == "command")
    for name, command_parser in sub.choices.items():  # type: ignore[union-attr]
        assert command_parser.description, f"colmax {name} has no description"


def test_unknown_command_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["frobnicate"])
    assert info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err


def test_demo_without_data_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--data", str(tmp_path / "nothing")]) == 2
    assert "corpus.jsonl is missing" in capsys.readouterr().err
