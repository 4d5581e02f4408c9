"""pool_factor through ColmaxVectorStore.add_texts / from_texts and ColmaxRetriever.from_texts."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from langchain_colmax import ColmaxRetriever, ColmaxVectorStore

from colmax import Engine
from colmax.errors import InvalidInputError

TEXTS = ["the cat sat on the mat and the dog ran", "paris is the capital of france"]


def _rows(engine: Engine, ids: list[str]) -> list[int]:
    return [len(v) for v in engine.backend.get_vectors(ids)]


def _full(engine: Engine) -> list[int]:
    return [len(v) for v in engine.encoder.encode_documents(TEXTS)]  # type: ignore[union-attr]


def test_add_texts_pools(engine: Engine) -> None:
    store = ColmaxVectorStore(engine)
    store.add_texts(TEXTS, ids=["a", "b"], pool_factor=2)
    assert _rows(engine, ["a", "b"]) == [math.ceil(n / 2) for n in _full(engine)]
    store.add_texts(TEXTS, ids=["c", "d"])
    assert _rows(engine, ["c", "d"]) == _full(engine)
    with pytest.raises(InvalidInputError, match="pool_factor"):
        store.add_texts(["x"], ids=["e"], pool_factor=0)
    assert "e" not in engine


def test_from_texts_pool(engine: Engine, tiny_colbert_model: Path) -> None:
    store = ColmaxVectorStore.from_texts(TEXTS, engine=engine, ids=["a", "b"], pool_factor=3)
    assert _rows(store.engine, ["a", "b"]) == [math.ceil(n / 3) for n in _full(engine)]
    retriever = ColmaxRetriever.from_texts(
        TEXTS, tiny_colbert_model, ids=["a", "b"], pool_factor=2, device="cpu"
    )
    assert _rows(retriever.engine, ["a", "b"]) == [math.ceil(n / 2) for n in _full(engine)]
    assert len(retriever.invoke("capital of france", k=2)) == 2
