"""``Engine.rerank_in_batches``: :meth:`~colmax.Engine.rerank` over more candidates than one call
takes (``MAX_RERANK_CANDIDATES``), merged by score: the same hits, scores, positions and order
as one call with a limit large enough. The limit is lowered so that a handful of candidates
spans several batches."""

from __future__ import annotations

import numpy as np
import pytest

from colmax import Engine, limits
from colmax.errors import InvalidInputError


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


N = 40
VECS = [_unit(np.random.default_rng(n).standard_normal((n % 9 + 1, 8))) for n in range(N)]
VECS[33] = VECS[2].copy()  # a tie across batches: the earlier candidate first
IDS = [f"d{i}" for i in range(N)]
QUERY = _unit(np.random.default_rng(99).standard_normal((5, 8)))


@pytest.fixture
def engine() -> Engine:
    eng = Engine(dim=8)
    eng.add(embeddings=VECS, ids=IDS, documents=[f"t{i}" for i in range(N)])
    return eng


def _same(got: list, want: list) -> None:
    # Batches pack other shapes: sums may differ in the last float32 bit.
    assert [(h.id, h.position, h.rank, h.text) for h in got] == [
        (h.id, h.position, h.rank, h.text) for h in want
    ]
    np.testing.assert_allclose([h.score for h in got], [h.score for h in want], atol=1e-6)


@pytest.mark.parametrize("k", [None, 1, 6, N])
def test_batches_give_what_one_call_gives(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, k: int | None
) -> None:
    order = IDS[::-1]  # positions differ from storage order
    whole = engine.rerank(None, ids=order, query_embedding=QUERY, k=k)
    monkeypatch.setattr(limits, "MAX_RERANK_CANDIDATES", 7)
    with pytest.raises(InvalidInputError, match="rerank_in_batches"):
        engine.rerank(None, ids=order, query_embedding=QUERY, k=k)
    batched = engine.rerank_in_batches(None, ids=order, query_embedding=QUERY, k=k)
    _same(batched, whole)
    ranked = [h.id for h in batched]
    if k is None or k == N:
        assert ranked.index("d33") < ranked.index("d2")  # d33 comes first in `order`


def test_texts_with_ids_reuse_and_encode_like_one_call(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    texts = [f"t{i}" for i in range(N)]
    whole = engine.rerank(None, texts, 5, ids=IDS, query_embedding=QUERY)
    monkeypatch.setattr(limits, "MAX_RERANK_CANDIDATES", 6)
    batched = engine.rerank_in_batches(None, texts, 5, ids=IDS, query_embedding=QUERY)
    _same(batched, whole)
    assert [h.rank for h in batched] == list(range(5))


def test_nothing_to_rerank_is_no_hits(engine: Engine) -> None:
    assert engine.rerank_in_batches(None, ids=[], query_embedding=QUERY) == []


def test_bad_input_is_refused_with_the_whole_sizes(engine: Engine) -> None:
    with pytest.raises(InvalidInputError, match="needs documents"):
        engine.rerank_in_batches(None, query_embedding=QUERY)
    with pytest.raises(InvalidInputError, match="got 3 ids for 2 documents"):
        engine.rerank_in_batches(None, ["a", "b"], ids=["d1", "d2", "d3"], query_embedding=QUERY)
