"""Shared unit-test fixtures: tiny random models in every checkpoint layout colmax reads.

The folders are built once per session under ``tmp_path_factory`` (well under a second each).
Tests must not modify them: copy the folder (``shutil.copytree``) before changing a file.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for tiny_models

from tiny_models import (
    make_tiny_colbert_model,
    make_tiny_hf_model,
    make_tiny_pylate_model,
)


@pytest.fixture(scope="session")
def tiny_hf_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A plain Hugging Face BERT folder (hidden size 32; format "hf")."""
    return make_tiny_hf_model(tmp_path_factory.mktemp("tiny_hf"))


@pytest.fixture(scope="session")
def tiny_colbert_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny BERT as a colbert-ai checkpoint (32 -> 16 projection; format "colbert")."""
    return make_tiny_colbert_model(tmp_path_factory.mktemp("tiny_colbert"))


@pytest.fixture(scope="session")
def tiny_pylate_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny BERT as a PyLate checkpoint (32 -> 16 Dense; format "pylate")."""
    return make_tiny_pylate_model(tmp_path_factory.mktemp("tiny_pylate"))
