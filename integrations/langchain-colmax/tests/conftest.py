"""Fixtures for the langchain-colmax tests.

The shared real-data fixtures (``minilm_path``, ``cranfield_dir``, ``cranfield_index``) come
from the repository's root ``conftest.py``. Here: the tiny random ColBERT model (built in well
under a second from a config, no download) and one encoder loaded from it, shared by every
test's fresh in-memory engine.
"""

from __future__ import annotations

import inspect
import sys
from collections.abc import Generator
from pathlib import Path
from typing import Any

import pytest

from colmax import Engine
from colmax.encoders import load_encoder
from colmax.encoders.base import Encoder

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tests"))  # for tiny_models

from tiny_models import make_tiny_colbert_model


@pytest.fixture(scope="session")
def tiny_colbert_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny BERT as a colbert-ai checkpoint (32 -> 16 projection, query length 32)."""
    return make_tiny_colbert_model(tmp_path_factory.mktemp("lc_tiny_colbert"))


@pytest.fixture(scope="session")
def tiny_encoder(tiny_colbert_model: Path) -> Encoder:
    """One encoder for the whole session (engines only read it)."""
    return load_encoder(str(tiny_colbert_model), device="cpu")


@pytest.fixture(scope="session")
def minilm_encoder(minilm_path: Path) -> Encoder:
    """The real all-MiniLM-L6-v2 encoder, loaded once (``Engine.load(path, encoder=...)``
    reuses it for the shared Cranfield index, which was built with the same weights)."""
    return load_encoder(str(minilm_path), device="cpu")


@pytest.fixture
def engine(tiny_encoder: Encoder) -> Generator[Engine, None, None]:
    """A fresh, empty, in-memory engine over the tiny ColBERT encoder."""
    with Engine(tiny_encoder) as eng:
        yield eng


# The root configuration runs pytest-asyncio in strict mode, and LangChain's standard suites
# define plain ``async def`` tests (their own packages use asyncio_mode = "auto"). Mark the
# coroutine tests collected under this folder so pytest-asyncio runs them, leaving the rest of
# the repository's tests alone. trylast: this wrapper runs inside pytest-asyncio's, so the mark
# is there when pytest-asyncio looks for it.
@pytest.hookimpl(hookwrapper=True, trylast=True)
def pytest_pycollect_makeitem(collector: Any, name: str, obj: object) -> Generator[None, Any, None]:
    outcome = yield
    result = outcome.get_result()
    items = result if isinstance(result, list) else [result]
    for item in items:
        if isinstance(item, pytest.Function) and inspect.iscoroutinefunction(item.obj):
            item.add_marker(pytest.mark.asyncio)
