"""`colmax index` and `colmax add`, run in-process with the tiny random ColBERT model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from colmax import Engine
from colmax.cli import main

DOCS = [
    {"id": "cat", "text": "the cat sat on the mat", "year": 2020, "lang": "en"},
    {"id": "paris", "text": "paris is the capital of france", "year": 2024, "lang": "fr"},
    {"id": "empty", "text": "   ", "year": 2000},
    {"id": "long", "text": " ".join(["search engine query document token"] * 40), "year": 2021},
]


def write_jsonl(path: Path, docs: list[dict]) -> Path:
    path.write_text("".join(json.dumps(d) + "\n" for d in docs), encoding="utf-8")
    return path


def test_index_jsonl_then_add_upserts(
    tiny_colbert_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "idx"
    src = write_jsonl(tmp_path / "docs.jsonl", DOCS)
    code = main(["index", str(src), "--model", str(tiny_colbert_model), "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "indexed 3 documents" in err and f"first at {src}:3" in err  # empty one skipped
    with Engine.load(out, device="cpu") as engine:
        assert sorted(engine.ids()) == ["cat", "long", "paris"]
        assert engine.get(["paris"])[0].metadata == {"year": 2024, "lang": "fr"}
    more = write_jsonl(
        tmp_path / "more.jsonl",
        [{"id": "cat", "text": "a red car", "year": 1999}, {"id": "new", "text": "hello world"}],
    )
    # --compile: the same documents through torch.compile (falls back to eager without g++)
    assert main(["add", str(out), str(more), "--quiet", "--compile"]) == 0
    assert capsys.readouterr().err == ""
    with Engine.load(out, device="cpu") as engine:
        assert sorted(engine.ids()) == ["cat", "long", "new", "paris"]
        assert engine.get(["cat"])[0].text == "a red car"


def test_index_folder_with_chunks_maps_hits_to_parents(
    tiny_colbert_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    notes = tmp_path / "notes"
    (notes / "sub").mkdir(parents=True)
    (notes / "a.md").write_text("# Cats\n" + "the cat sat on the mat. " * 30)
    (notes / "sub" / "b.txt").write_text("paris is the capital of france")
    out = tmp_path / "idx"
    argv = ["index", str(notes), "--model", str(tiny_colbert_model), "--out", str(out)]
    assert main([*argv, "--chunk-tokens", "16", "--chunk-overlap", "4", "-q"]) == 0
    with Engine.load(out, device="cpu") as engine:
        ids = engine.ids()
        assert "sub/b.txt#0" in ids and len([i for i in ids if i.startswith("a.md#")]) > 5
        chunk = engine.get(["a.md#1"])[0]
        assert chunk.metadata["parent_id"] == "a.md" and chunk.metadata["path"] == "a.md"
    capsys.readouterr()
    assert main(["search", str(out), "cat sat on the mat", "--json", "-k", "2"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert [h["id"] for h in result["hits"]] == ["a.md", "sub/b.txt"]  # parents, not chunks
    assert result["hits"][0]["metadata"]["chunk_id"].startswith("a.md#")
    assert main(["search", str(out), "cat sat on the mat", "--json", "-k", "3", "--chunks"]) == 0
    raw = json.loads(capsys.readouterr().out)
    assert all(h["id"].startswith("a.md#") for h in raw["hits"])


def test_add_with_chunks_replaces_stale_chunks(tiny_colbert_model: Path, tmp_path: Path) -> None:
    out = tmp_path / "idx"
    first = write_jsonl(tmp_path / "a.jsonl", [{"id": "d", "text": "one two three " * 20}])
    model = str(tiny_colbert_model)
    chunk = ["--chunk-tokens", "8", "-q"]
    assert main(["index", str(first), "--model", model, "--out", str(out), *chunk]) == 0
    second = write_jsonl(tmp_path / "b.jsonl", [{"id": "d", "text": "one two three"}])
    assert main(["add", str(out), str(second), *chunk]) == 0
    with Engine(path=out) as engine:
        assert engine.ids() == ["d#0"]


def test_index_refuses_an_existing_index_and_a_busy_folder(
    tiny_colbert_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = write_jsonl(tmp_path / "docs.jsonl", DOCS[:2])
    out = tmp_path / "idx"
    argv = ["index", str(src), "--model", str(tiny_colbert_model), "--out", str(out), "-q"]
    assert main(argv) == 0
    assert main(argv) == 2
    assert "already an index" in capsys.readouterr().err
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "file").write_text("x")
    assert main([*argv[:-3], "--out", str(tmp_path / "busy"), "-q"]) == 2
    assert "not an empty folder" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()  # an empty folder is fine
    assert main([*argv[:-3], "--out", str(tmp_path / "empty"), "-q"]) == 0


def test_a_bad_record_leaves_nothing_behind(
    tiny_colbert_model: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "docs.jsonl"
    good = "".join(json.dumps({"id": str(i), "text": f"the cat {i}"}) + "\n" for i in range(5))
    src.write_text(good + '{"id": "x", "text": \n')
    out = tmp_path / "idx"
    argv = ["index", str(src), "--model", str(tiny_colbert_model), "--out", str(out)]
    assert main([*argv, "--batch-size", "2"]) == 2  # two batches were committed before the error
    err = capsys.readouterr().err
    assert f"{src}:6: invalid JSON" in err and "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["docs.jsonl"]


def test_ctrl_c_exits_130_and_leaves_nothing_behind(
    tiny_colbert_model: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import colmax.cli.index as index_cmd

    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(index_cmd, "write_records", interrupted)
    src = write_jsonl(tmp_path / "docs.jsonl", DOCS[:2])
    argv = ["index", str(src), "--model", str(tiny_colbert_model), "--out", str(tmp_path / "o")]
    assert main(argv) == 130
    assert sorted(p.name for p in tmp_path.iterdir()) == ["docs.jsonl"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--chunk-tokens", "4", "--chunk-overlap", "4"], "chunk overlap must be"),
        (["--format", "csv"], "column(s) ['id', 'text'] not in the header"),
        (["--id-field", "nope"], "no id field 'nope'"),
    ],
)
def test_index_input_errors_exit_2_with_a_message(
    tiny_colbert_model: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    message: str,
) -> None:
    src = write_jsonl(tmp_path / "docs.jsonl", DOCS[:2])
    argv = ["index", str(src), "--model", str(tiny_colbert_model), "--out", str(tmp_path / "o")]
    assert main([*argv, *args]) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err
    assert not (tmp_path / "o").exists()


def test_index_requires_model_and_out(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["index", "docs.jsonl"])
    assert info.value.code == 2
    assert "--model" in capsys.readouterr().err
