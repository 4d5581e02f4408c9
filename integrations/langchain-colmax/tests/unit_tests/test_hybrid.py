"""ColmaxRetriever(hybrid=...): BM25 fused with MaxSim, scores per side in the metadata."""

from __future__ import annotations

import pytest
from langchain_colmax import ColmaxRetriever
from pydantic import ValidationError

from colmax import Engine

TEXTS = {
    "cat": ("the cat sat on the mat", {"topic": "pets"}),
    "zoo": ("zebras and giraffes at the city zoo", {"topic": "pets"}),
    "tram": ("the tram crosses the city", {"topic": "travel"}),
    "paris": ("paris is the capital of france", {"topic": "travel"}),
}
QUERY = "zebras in the city"


@pytest.fixture
def filled(engine: Engine) -> Engine:
    engine.add(
        [t for t, _ in TEXTS.values()], ids=list(TEXTS), metadatas=[m for _, m in TEXTS.values()]
    )
    return engine


@pytest.mark.parametrize("mode", ["rrf", "minmax", "rerank"])
def test_hybrid_retriever_matches_the_engine(filled: Engine, mode: str) -> None:
    retriever = ColmaxRetriever(
        engine=filled, k=3, hybrid=mode, hybrid_candidates=3, hybrid_weight=0.7
    )
    docs = retriever.invoke(QUERY)
    hits = filled.search(QUERY, k=3, hybrid=mode, candidates=3, weight=0.7)
    assert [d.id for d in docs] == [h.id for h in hits]  # type: ignore[union-attr]
    for doc, hit in zip(docs, hits):
        assert doc.metadata["score"] == hit.score  # type: ignore[union-attr]  # the fused score
        assert doc.metadata["colmax_scores"] == hit.scores  # type: ignore[union-attr]
        assert doc.metadata["topic"] == TEXTS[doc.id][1]["topic"]  # type: ignore[index]
    assert "zoo" in [d.id for d in docs]
    filtered = retriever.invoke("zebras city tram", filter={"topic": "travel"})
    assert filtered and all(d.metadata["topic"] == "travel" for d in filtered)
    plain = ColmaxRetriever(engine=filled, k=3).invoke(QUERY)
    assert all("colmax_scores" not in d.metadata for d in plain)


def test_hybrid_field_is_validated(filled: Engine) -> None:
    with pytest.raises(ValidationError):
        ColmaxRetriever(engine=filled, hybrid="bm25")
    with pytest.raises(ValidationError):
        ColmaxRetriever(engine=filled, hybrid="rrf", hybrid_weight=1.5)
