"""A document whose every token the encoder's skiplist masks has no vectors: ``add`` refuses
it by name and writes nothing (it failed deep in the packing code with "offsets must be
strictly increasing")."""

from __future__ import annotations

from pathlib import Path

import pytest

from colmax import Engine
from colmax.errors import InvalidInputError


def test_a_document_with_every_token_masked_is_refused_by_name(tiny_colbert_model: Path) -> None:
    engine = Engine.from_pretrained(
        tiny_colbert_model, device="cpu", skiplist_words=["[CLS]", "[SEP]", "[unused1]", "cat"]
    )
    with pytest.raises(InvalidInputError, match=r"documents\[1\] has no vectors left.*'cat'"):
        engine.add(["the dog", "cat"], ids=["a", "b"])
    assert len(engine) == 0
    engine.add(["the dog"], ids=["a"])
    assert engine.search("dog", k=1)[0].id == "a"
