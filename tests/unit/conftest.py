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


# ---------------------------------------------------------------------- vision retrievers


@pytest.fixture(scope="session")
def tiny_colpali_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random ColPaliForRetrieval + ColPaliProcessor saved with save_pretrained
    (64 patches of an 8 x 8 grid, dim 16; format "colpali-hf")."""
    pytest.importorskip("PIL", reason='pip install "colmax[vision]"')
    from colmax.vision.tiny import make_tiny_colpali

    return make_tiny_colpali(tmp_path_factory.mktemp("tiny_colpali"))


@pytest.fixture(scope="session")
def tiny_colqwen2_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random ColQwen2ForRetrieval + ColQwen2Processor (aspect-preserving grids)."""
    pytest.importorskip("PIL", reason='pip install "colmax[vision]"')
    from colmax.vision.tiny import make_tiny_colqwen2

    return make_tiny_colqwen2(tmp_path_factory.mktemp("tiny_colqwen2"))


@pytest.fixture(scope="session")
def colpali_encoder(tiny_colpali_model: Path) -> object:
    """The tiny ColPali loaded once (do not change it)."""
    from colmax.encoders import load_encoder

    return load_encoder(tiny_colpali_model)


@pytest.fixture(scope="session")
def text_pdf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 3-page PDF whose pages carry ``colmax.vision.tiny.SAMPLE_PAGES`` as real text."""
    pytest.importorskip("pypdfium2", reason='pip install "colmax[vision]"')
    from colmax.vision.tiny import SAMPLE_PAGES, write_text_pdf

    return write_text_pdf(tmp_path_factory.mktemp("pdf") / "report.pdf", list(SAMPLE_PAGES))
