"""ColmaxRerank(explain=True): copies of the nodes carry metadata["colmax_explanation"]."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from llama_index.core.schema import MetadataMode, NodeWithScore, TextNode
from llama_index.postprocessor.colmax_rerank import ColmaxRerank

from colmax import Engine

KEY = "colmax_explanation"
QUERY = "what is the capital of france"
TEXTS = ["the cat sat on the mat", "paris is the capital of france", "a big red car", ""]


def _candidates() -> list[NodeWithScore]:
    return [
        NodeWithScore(node=TextNode(id_=f"n{i}", text=t, metadata={"n": i}), score=1.0)
        for i, t in enumerate(TEXTS)
    ]


@pytest.mark.parametrize("indexed", [False, True], ids=["encoded", "stored-vectors"])
def test_explanations_on_copies(tiny_model: Path, indexed: bool) -> None:
    engine = Engine.from_pretrained(tiny_model, device="cpu")
    if indexed:
        engine.add(TEXTS[:3], ids=["n0", "n1", "n2"])
    candidates = _candidates()
    reranker = ColmaxRerank(top_n=4, engine=engine, explain=True, metadata_mode=MetadataMode.NONE)
    result = reranker.postprocess_nodes(candidates, query_str=QUERY)
    assert len(result) == 4 and result[-1].score is None  # the empty node: unscored, last
    assert KEY not in result[-1].node.metadata
    for r in result[:3]:
        e = r.node.metadata[KEY]
        json.dumps(e)
        assert e["id"] == r.node.node_id and e["query"] == QUERY
        assert e["score"] == pytest.approx(r.score, abs=5e-3)
        text = r.node.get_content(metadata_mode=MetadataMode.NONE)
        for m in e["matches"]:
            if m["doc_span"] is not None:
                assert text[m["doc_span"][0] : m["doc_span"][1]] == m["doc_token"]
        assert KEY not in r.node.get_content(metadata_mode=MetadataMode.LLM)
    assert all(KEY not in c.node.metadata for c in candidates)  # inputs untouched
    plain = ColmaxRerank(top_n=4, engine=engine, metadata_mode=MetadataMode.NONE)
    again = plain.postprocess_nodes(candidates, query_str=QUERY)
    assert [r.node.node_id for r in again] == [r.node.node_id for r in result]
    assert all(KEY not in r.node.metadata for r in again)
