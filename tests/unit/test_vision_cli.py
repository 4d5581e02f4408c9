"""``colmax index`` on a folder of PDFs with a vision model, ``colmax search --explain --out``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from colmax.cli import main

pytest.importorskip("pypdfium2", reason='pip install "colmax[vision]"')


def test_index_a_folder_and_write_heatmaps(
    tiny_colpali_model: Path, text_pdf: Path, tmp_path: Path, capsys
) -> None:
    folder = tmp_path / "docs"
    folder.mkdir()
    shutil.copy(text_pdf, folder / "report.pdf")
    out = tmp_path / "idx"
    args = ["index", str(folder), "--model", str(tiny_colpali_model), "--out", str(out)]
    assert main([*args, "--dpi", "30", "--pool-factor", "2", "-q"]) == 0
    assert main(["search", str(out), "sales table", "-k", "2", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)["hits"]
    assert [h["metadata"]["page"] for h in hits] and all(h["metadata"]["source"] for h in hits)
    heat = tmp_path / "heat"
    code = main(["search", str(out), "sales table", "-k", "2", "--explain", "--out", str(heat)])
    assert code == 0
    printed = capsys.readouterr().out
    assert sorted(p.name for p in heat.iterdir()) == ["q1-1.png", "q1-2.png"]
    assert str(heat / "q1-1.png") in printed


def test_out_needs_explain(
    tiny_colpali_model: Path, text_pdf: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "idx"
    assert (
        main(
            [
                "index",
                str(text_pdf),
                "--model",
                str(tiny_colpali_model),
                "--out",
                str(out),
                "-q",
                "--dpi",
                "20",
            ]
        )
        == 0
    )
    assert main(["search", str(out), "x", "--out", str(tmp_path / "h")]) != 0
    assert "--explain" in capsys.readouterr().err


def test_pdfs_with_a_text_model_fail_cleanly(
    tiny_colbert_model: Path, text_pdf: Path, tmp_path: Path, capsys
) -> None:
    out = tmp_path / "idx"
    assert (
        main(["index", str(text_pdf), "--model", str(tiny_colbert_model), "--out", str(out)]) != 0
    )
    assert "vision retriever" in capsys.readouterr().err and not out.exists()
