"""The LangChain example script runs offline with the real MiniLM weights."""

from __future__ import annotations

import runpy
from pathlib import Path

import pytest

EXAMPLE = Path(__file__).resolve().parents[4] / "examples" / "04_langchain_rag_chain.py"


def test_rag_chain_example_runs(minilm_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    runpy.run_path(str(EXAMPLE), run_name="__main__")
    out = capsys.readouterr().out
    assert "[colbert] ColBERT encodes" in out  # the filtered search finds the ColBERT passage
    assert "answer: Each query token keeps its best document-token match [colbert]." in out
    assert "first stage: ['colbert', 'plaid', 'bm25', 'dense']" in out
    reranked = out.split("first stage:")[1].splitlines()[1:]  # "  <score>  [<id>] <text>"
    assert len(reranked) == 2
    assert all(float(line.split()[0]) > 0 and line.split()[1].startswith("[") for line in reranked)
