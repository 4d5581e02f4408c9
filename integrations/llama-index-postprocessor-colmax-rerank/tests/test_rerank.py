"""ColmaxRerank over the tiny colbert-ai checkpoint: scores, batching, reuse, events, inputs."""

from __future__ import annotations

import asyncio
from pathlib import Path

import llama_index.postprocessor.colmax_rerank as package
import numpy as np
import pytest
from llama_index.core.callbacks import CallbackManager, CBEventType, LlamaDebugHandler
from llama_index.core.schema import MetadataMode, NodeWithScore, QueryBundle, TextNode
from llama_index.postprocessor.colmax_rerank import ColmaxRerank

from colmax import Engine, limits
from colmax.errors import InvalidInputError

TEXTS = [
    "the cat sat on the mat",
    "a dog ran in the house",
    "paris is the capital of france",
    "late interaction model for search",
    "the red car and the blue car",
    "hello world query document",
]
QUERY = "the cat and the dog"


def _candidates() -> list[NodeWithScore]:
    return [
        NodeWithScore(
            node=TextNode(id_=f"n{i}", text=text, metadata={"lang": "en", "n": i}),
            score=float(len(TEXTS) - i),
        )
        for i, text in enumerate(TEXTS)
    ]


@pytest.fixture(scope="module")
def engine(tiny_model: Path) -> Engine:
    """An engine with nothing indexed: every candidate is encoded."""
    return Engine.from_pretrained(tiny_model, device="cpu")


class _Spy:
    """Wraps a bound method, recording the calls and passing them through."""

    def __init__(self, method: object) -> None:
        self.method, self.calls = method, []

    def __call__(self, *args: object, **kwargs: object) -> object:
        self.calls.append((args, kwargs))
        return self.method(*args, **kwargs)  # type: ignore[operator]


def test_public_api() -> None:
    assert package.__all__ == ["ColmaxRerank"]
    assert ColmaxRerank.class_name() == "ColmaxRerank"


def test_scores_are_the_engine_maxsim_in_one_batched_call(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    spy = _Spy(engine.rerank)
    monkeypatch.setattr(engine, "rerank", spy)
    reranker = ColmaxRerank(top_n=4, engine=engine, metadata_mode=MetadataMode.NONE)
    result = reranker.postprocess_nodes(_candidates(), query_str=QUERY)
    assert len(spy.calls) == 1  # every candidate scored in one call
    (query, texts), kwargs = spy.calls[0]
    assert query == QUERY and texts == TEXTS and kwargs["ids"] == [f"n{i}" for i in range(6)]

    # Reference: the query and documents through the encoder (markers, [MASK] augmentation,
    # projection), MaxSim = sum over query vectors of the best document-token cosine.
    q = engine.encoder.encode_queries([QUERY])[0].numpy()
    docs = [d.numpy() for d in engine.encoder.encode_documents(TEXTS)]
    reference = np.array([(q @ d.T).max(axis=1).sum() for d in docs])
    order = np.argsort(-reference, kind="stable")[:4]
    assert [r.node.node_id for r in result] == [f"n{i}" for i in order]
    np.testing.assert_allclose([r.score for r in result], reference[order], atol=1e-3)


def test_returns_new_objects_and_leaves_inputs_alone(engine: Engine) -> None:
    candidates = _candidates()
    before = [(c.score, c.node.model_dump()) for c in candidates]
    result = ColmaxRerank(top_n=6, engine=engine).postprocess_nodes(candidates, query_str=QUERY)
    assert all(r is not c for r in result for c in candidates)
    assert [(c.score, c.node.model_dump()) for c in candidates] == before
    assert {r.node.node_id for r in result} == {c.node.node_id for c in candidates}


def test_keep_retrieval_score_copies_the_node(engine: Engine) -> None:
    candidates = _candidates()
    reranker = ColmaxRerank(top_n=3, engine=engine, keep_retrieval_score=True)
    result = reranker.postprocess_nodes(candidates, query_str=QUERY)
    by_id = {c.node.node_id: c for c in candidates}
    for r in result:
        original = by_id[r.node.node_id]
        assert r.node.metadata["retrieval_score"] == original.score
        assert r.node is not original.node and "retrieval_score" not in original.node.metadata
        assert r.node.get_content() == original.node.get_content()


def test_metadata_mode_decides_the_scored_text(engine: Engine) -> None:
    candidates = _candidates()
    embed = ColmaxRerank(top_n=6, engine=engine).postprocess_nodes(candidates, query_str=QUERY)
    texts = [c.node.get_content(metadata_mode=MetadataMode.EMBED) for c in candidates]
    assert "lang: en" in texts[0]
    direct = engine.rerank(QUERY, texts, ids=[c.node.node_id for c in candidates])
    assert [(r.node.node_id, r.score) for r in embed] == [(h.id, h.score) for h in direct]


def test_stored_vectors_are_reused_for_indexed_candidates(
    tiny_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    indexed = Engine.from_pretrained(tiny_model, device="cpu")
    indexed.add(TEXTS[:4], ids=[f"n{i}" for i in range(4)])
    candidates = _candidates()
    candidates[1] = NodeWithScore(node=TextNode(id_="n1", text="the dog ran away"), score=0.0)
    spy = _Spy(indexed.encoder.encode_documents)
    monkeypatch.setattr(indexed.encoder, "encode_documents", spy)
    reranker = ColmaxRerank(top_n=6, engine=indexed, metadata_mode=MetadataMode.NONE)
    result = reranker.postprocess_nodes(candidates, query_str=QUERY)
    # n0, n2, n3 are indexed with the same text: only n1 (changed text), n4 and n5 are encoded.
    [encoded] = [call[0][0] for call in spy.calls]
    assert encoded == ["the dog ran away", TEXTS[4], TEXTS[5]]
    fresh = ColmaxRerank(top_n=6, model=tiny_model, device="cpu", metadata_mode=MetadataMode.NONE)
    expected = fresh.postprocess_nodes(candidates, query_str=QUERY)
    assert [r.node.node_id for r in result] == [r.node.node_id for r in expected]
    np.testing.assert_allclose(  # stored vectors are float16
        [r.score for r in result], [r.score for r in expected], atol=5e-3
    )


@pytest.mark.parametrize("top_n", [2, 10])
def test_more_candidates_than_one_engine_call_takes(
    engine: Engine, monkeypatch: pytest.MonkeyPatch, top_n: int
) -> None:
    # Engine.rerank refuses more than colmax.limits.MAX_RERANK_CANDIDATES (1,000) at once:
    # the reranker scores them in batches and keeps the best overall. A limit of 4 makes two
    # batches of the six candidates; the node without text still comes last.
    reranker = ColmaxRerank(top_n=top_n, engine=engine, metadata_mode=MetadataMode.NONE)
    candidates = [*_candidates(), NodeWithScore(node=TextNode(id_="e", text=""), score=9.0)]
    expected = reranker.postprocess_nodes(candidates, query_str=QUERY)
    monkeypatch.setattr(limits, "MAX_RERANK_CANDIDATES", 4)
    with pytest.raises(InvalidInputError, match="at most 4 candidates"):
        engine.rerank(QUERY, TEXTS)
    result = reranker.postprocess_nodes(candidates, query_str=QUERY)
    assert [r.node.node_id for r in result] == [r.node.node_id for r in expected]
    assert [r.score for r in result] == pytest.approx([r.score for r in expected], abs=1e-5)
    assert len(result) == min(top_n, len(candidates))


def test_repeated_node_ids_are_all_scored(engine: Engine) -> None:
    candidates = _candidates()[:3] + _candidates()[:1]
    result = ColmaxRerank(top_n=10, engine=engine).postprocess_nodes(candidates, query_str=QUERY)
    assert sorted(r.node.node_id for r in result) == ["n0", "n0", "n1", "n2"]
    twins = [r.score for r in result if r.node.node_id == "n0"]
    assert twins[0] == pytest.approx(twins[1])


def test_nodes_without_text_come_last_unscored(engine: Engine) -> None:
    candidates = [*_candidates()[:2], NodeWithScore(node=TextNode(id_="e", text=""), score=9.0)]
    reranker = ColmaxRerank(top_n=3, engine=engine, metadata_mode=MetadataMode.NONE)
    result = reranker.postprocess_nodes(candidates, query_str=QUERY)
    assert [r.node.node_id for r in result][-1] == "e" and result[-1].score is None
    assert all(r.score is not None for r in result[:2])


def test_a_query_is_required(engine: Engine, events: object) -> None:
    with pytest.raises(ValueError, match="needs the query"):
        ColmaxRerank(engine=engine).postprocess_nodes(_candidates())
    assert events.of("ReRankStartEvent") == []  # type: ignore[attr-defined]


def test_rerank_events_are_emitted(engine: Engine, events: object) -> None:
    debug = LlamaDebugHandler()
    reranker = ColmaxRerank(top_n=2, engine=engine, callback_manager=CallbackManager([debug]))
    candidates = _candidates()
    result = reranker.postprocess_nodes(candidates, query_bundle=QueryBundle(QUERY))
    [start] = events.of("ReRankStartEvent")  # type: ignore[attr-defined]
    [end] = events.of("ReRankEndEvent")  # type: ignore[attr-defined]
    assert start.query.query_str == QUERY and start.top_n == 2
    assert start.model_name == engine.encoder.name and start.nodes == candidates
    assert end.nodes == result
    [(_, end_payload)] = [(s, e) for s, e in debug.get_event_pairs(CBEventType.RERANKING)]
    assert end_payload.payload["nodes"] == result


def test_no_candidates(engine: Engine, events: object) -> None:
    assert ColmaxRerank(engine=engine).postprocess_nodes([], query_str=QUERY) == []
    assert len(events.of("ReRankStartEvent")) == len(events.of("ReRankEndEvent")) == 1  # type: ignore[attr-defined]


def test_async_equals_sync(engine: Engine) -> None:
    reranker = ColmaxRerank(top_n=3, engine=engine)
    sync = reranker.postprocess_nodes(_candidates(), query_str=QUERY)
    result = asyncio.run(reranker.apostprocess_nodes(_candidates(), query_str=QUERY))
    assert [(r.node.node_id, r.score) for r in result] == [(r.node.node_id, r.score) for r in sync]


def test_arguments_are_checked(tiny_model: Path, engine: Engine) -> None:
    with pytest.raises(ValueError, match="exactly one of model"):
        ColmaxRerank()
    with pytest.raises(ValueError, match="exactly one of model"):
        ColmaxRerank(model=tiny_model, engine=engine)
    with pytest.raises(ValueError, match="encoder"):
        ColmaxRerank(engine=Engine(dim=4))
    with pytest.raises(ValueError, match="go with model="):
        ColmaxRerank(engine=engine, device="cpu")
    with pytest.raises(TypeError, match="Engine"):
        ColmaxRerank(engine="an engine")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="top_n"):
        ColmaxRerank(top_n=0, engine=engine)
    assert ColmaxRerank(model=tiny_model, device="cpu").model == str(tiny_model)
