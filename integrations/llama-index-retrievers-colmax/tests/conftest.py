"""Fixtures for the ColmaxRetriever tests.

Unit tests use the repository's tiny random colbert-ai checkpoint (built in well under a second,
no download); ``tests/integration`` uses the real MiniLM weights and the shared Cranfield index
from the root ``conftest.py``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest
from llama_index.core.schema import NodeRelationship, RelatedNodeInfo, TextNode

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "tests"))  # for tiny_models

from tiny_models import make_tiny_colbert_model

# Words from the tiny model's vocabulary, so the tiny encoder sees real tokens.
TEXTS = [
    "the cat sat on the mat",
    "a dog ran in the house",
    "paris is the capital of france",
    "late interaction model for search",
    "the red car and the blue car",
    "hello world query document",
]


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny BERT as a colbert-ai checkpoint (32 -> 16 projection, markers, [MASK])."""
    return make_tiny_colbert_model(tmp_path_factory.mktemp("tiny_colbert"))


def _make_nodes() -> list[TextNode]:
    metadata = [
        {"year": 2019, "lang": "en", "tags": ["pets", "home"], "score": 0.5},
        {"year": 2020, "lang": "de", "tags": ["pets"], "score": 1.5},
        {"year": 2021, "lang": "fr", "tags": ["travel"]},
        {"year": 2022, "lang": "en", "tags": ["search", "ml"], "score": 3.0},
        {"year": 2023, "lang": "en", "tags": []},
        {"lang": "de", "tags": ["ml"], "score": 2.5},
    ]
    return [
        TextNode(
            id_=f"n{i}",
            text=text,
            metadata=meta,
            relationships={NodeRelationship.SOURCE: RelatedNodeInfo(node_id=f"doc{i // 2}")},
        )
        for i, (text, meta) in enumerate(zip(TEXTS, metadata))
    ]


@pytest.fixture(scope="session")
def make_nodes() -> Callable[[], list[TextNode]]:
    """Builds fresh copies of the six test nodes (for fixtures wider than one test)."""
    return _make_nodes


@pytest.fixture
def nodes() -> list[TextNode]:
    """Six nodes from three source documents (n0-n1: doc0, n2-n3: doc1, n4-n5: doc2), with
    typed metadata for the filter tests (n5 has no year, n4 an empty tag list)."""
    return _make_nodes()
