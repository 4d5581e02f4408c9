"""LangChain's standard test suites, run against the real classes and real colmax engines.

Nothing is mocked. The suites' ``get_embeddings()`` (a fake single-vector ``Embeddings``) is
not used: a colmax store encodes text itself with a late-interaction model.

- ``TestColmaxRetrieverStandard`` and ``TestColmaxVectorStoreStandard`` use the tiny random
  ColBERT model (``tests/tiny_models.py``: real tokenizer, markers, ``[MASK]`` query
  expansion, projection and MaxSim) and run in seconds.
- ``TestColmaxVectorStoreStandardMiniLM`` runs the same vector-store suite with the real
  all-MiniLM-L6-v2 weights, with no accommodation: every test passes.

The suites' own texts are ``foo``, ``bar``, ``baz`` and ``new foo``, and four vector-store
tests assert a *ranking* (``similarity_search("bar", k=2)`` returns ``bar`` before ``foo``).
The tiny model used here therefore has those words in its vocabulary (``extra_words``): with
the shared 80-token vocabulary both texts would be ``[CLS] [D] [UNK] [SEP]``, tie exactly, and
keep insertion order. Every standard test runs unmodified, none is skipped or marked xfail.
"""

from __future__ import annotations

from collections.abc import Generator
from typing import Any

import pytest
from langchain_colmax import ColmaxRetriever, ColmaxVectorStore
from langchain_core.vectorstores import VectorStore
from langchain_tests.integration_tests import (
    RetrieversIntegrationTests,
    VectorStoreIntegrationTests,
)

from colmax import Engine
from colmax.encoders import load_encoder
from colmax.encoders.base import Encoder
from tiny_models import make_tiny_colbert_model

# The words the standard suites write and search, added to the tiny model's vocabulary.
SUITE_WORDS = ("foo", "bar", "baz", "new")

TEXTS = [
    "the cat sat on the mat",
    "a dog ran in the house",
    "paris is the capital of france",
    "late interaction model for search",
    "the red car is big",
    "hello world",
]


@pytest.fixture(scope="module")
def suite_encoder(tmp_path_factory: pytest.TempPathFactory) -> Encoder:
    """The tiny random ColBERT model with the suites' words in its vocabulary."""
    folder = make_tiny_colbert_model(tmp_path_factory.mktemp("suite_tiny"), extra_words=SUITE_WORDS)
    return load_encoder(folder, device="cpu")


class TestColmaxRetrieverStandard(RetrieversIntegrationTests):
    @pytest.fixture(autouse=True)
    def _engine(self, suite_encoder: Encoder) -> Generator[None, None, None]:
        self._eng = Engine(suite_encoder)
        self._eng.add(TEXTS, ids=[f"d{i}" for i in range(len(TEXTS))])
        yield
        self._eng.close()

    @property
    def retriever_constructor(self) -> type[ColmaxRetriever]:
        return ColmaxRetriever

    @property
    def retriever_constructor_params(self) -> dict[str, Any]:
        return {"engine": self._eng}

    @property
    def retriever_query_example(self) -> str:
        return "what is the capital of france?"


class TestColmaxVectorStoreStandard(VectorStoreIntegrationTests):
    @pytest.fixture
    def vectorstore(self, suite_encoder: Encoder) -> Generator[VectorStore, None, None]:  # type: ignore[override]
        with Engine(suite_encoder) as engine:
            yield ColmaxVectorStore(engine)


class TestColmaxVectorStoreStandardMiniLM(VectorStoreIntegrationTests):
    @pytest.fixture
    def vectorstore(self, minilm_encoder: Encoder) -> Generator[VectorStore, None, None]:  # type: ignore[override]
        with Engine(minilm_encoder) as engine:
            yield ColmaxVectorStore(engine)
