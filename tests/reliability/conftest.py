"""Fixtures for the reliability tests (hypothesis profiles live in ``rel_helpers``)."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

HERE = Path(__file__).resolve().parent
for path in (HERE, HERE.parent):  # rel_helpers & co, and tests/tiny_models.py
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

from tiny_models import make_tiny_hf_model  # noqa: E402


@pytest.fixture(autouse=True)
def _one_torch_thread() -> Iterator[None]:
    """Score with one thread: on a loaded 2-core box two torch threads are ~20x slower."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def fast_dir() -> Iterator[Path]:
    """A scratch folder on tmpfs when available (see ``rel_helpers.scratch_dir``)."""
    from rel_helpers import scratch_dir

    path = scratch_dir("colmax-rel-")
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random plain-HF BERT (32-d token vectors), built once per session."""
    return make_tiny_hf_model(tmp_path_factory.mktemp("reliability_tiny_hf"))
