"""Re-ranking indexed candidates (``rerank(ids=...)``) scores them where they are stored: the
flat index scores its packed copy (as search does), other backends their stored vectors.
Same hits, scores and order as scoring the fetched vectors."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from colmax import Engine
from colmax.errors import UnknownIdError
from colmax.scoring import maxsim_ragged


def _unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)


VECS = [_unit(np.random.default_rng(n).standard_normal((int(n) % 29 + 1, 16))) for n in range(60)]
VECS[7] = VECS[3].copy()  # a tie: input order decides


@pytest.fixture
def engine() -> Engine:
    eng = Engine(dim=16)
    eng.add(
        embeddings=VECS, ids=[f"d{i}" for i in range(60)], documents=[f"t{i}" for i in range(60)]
    )
    eng.delete(["d5"])
    return eng


def test_stored_rerank_equals_scoring_the_fetched_vectors(engine: Engine) -> None:
    q = _unit(np.random.default_rng(1).standard_normal((6, 16)))
    ids = ["d7", "d40", "d3", "d0", "d59", "d12"]
    hits = engine.rerank(None, ids=ids, query_embedding=q)
    # the index stores float16: score the stored values
    docs = [torch.from_numpy(VECS[int(i[1:])].astype(np.float16).astype(np.float32)) for i in ids]
    want = maxsim_ragged([torch.from_numpy(q)], docs)[0].numpy()
    assert [h.position for h in hits] == sorted(range(6), key=lambda i: -want[i])
    got = {h.id: h.score for h in hits}
    np.testing.assert_allclose([got[i] for i in ids], want, rtol=0, atol=1e-5)
    assert [h.id for h in hits].index("d7") < [h.id for h in hits].index("d3")  # tie: input order
    assert got["d7"] == got["d3"]
    assert [h.text for h in hits] == [f"t{ids[h.position][1:]}" for h in hits]
    top = engine.rerank(None, ids=ids, query_embedding=q, k=2, normalize=True)
    assert [h.id for h in top] == [h.id for h in hits[:2]]
    assert top[0].score == pytest.approx(hits[0].score / 6)


def test_stored_rerank_matches_search_scores(engine: Engine) -> None:
    q = _unit(np.random.default_rng(2).standard_normal((4, 16)))
    found = engine.search(query_embeddings=q, k=5)
    again = engine.rerank(None, ids=[h.id for h in found], query_embedding=q)
    assert [h.id for h in again] == [h.id for h in found]
    np.testing.assert_allclose([h.score for h in again], [h.score for h in found], atol=1e-5)


@pytest.mark.parametrize("ids", [["d1", "nope"], ["d5"]])
def test_stored_rerank_of_unknown_or_deleted_ids_raises(engine: Engine, ids: list[str]) -> None:
    q = _unit(np.ones((2, 16)))
    with pytest.raises(UnknownIdError):
        engine.rerank(None, ids=ids, query_embedding=q)
