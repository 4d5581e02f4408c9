"""ColmaxRetriever's explain, pool_factor and hybrid options over the tiny real model."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from llama_index.core.schema import MetadataMode, TextNode
from llama_index.retrievers.colmax import ColmaxRetriever

KEY = "colmax_explanation"
QUERY = "what is the capital of france"


def test_retrieved_nodes_carry_explanations(tiny_model: Path, nodes: list[TextNode]) -> None:
    retriever = ColmaxRetriever.from_defaults(
        nodes=nodes, model=tiny_model, device="cpu", similarity_top_k=3, explain=True
    )
    results = retriever.retrieve(QUERY)
    assert len(results) == 3
    for r in results:
        e = r.node.metadata[KEY]
        json.dumps(e)
        assert e["id"] == r.node.node_id and e["query"] == QUERY
        assert e["score"] == pytest.approx(r.score, abs=5e-3)
        assert e == retriever.engine.explain(QUERY, r.node.node_id).to_dict()
        # Spans index into the encoded text (the node's EMBED view).
        stored = retriever.engine.get([r.node.node_id])[0].text
        for m in e["matches"]:
            if m["doc_span"] is not None:
                assert stored[m["doc_span"][0] : m["doc_span"][1]] == m["doc_token"]
        # Never in the prompt or the embedded text.
        assert KEY not in r.node.get_content(metadata_mode=MetadataMode.LLM)
        assert KEY not in r.node.get_content(metadata_mode=MetadataMode.EMBED)
        assert r.node.metadata["year"] == next(
            n.metadata.get("year") for n in nodes if n.node_id == r.node.node_id
        )
    assert all(KEY not in n.metadata for n in nodes)  # the caller's nodes are untouched
    retriever.explain = False
    assert all(KEY not in r.node.metadata for r in retriever.retrieve(QUERY))


def test_explain_is_persisted(tiny_model: Path, nodes: list[TextNode], tmp_path: Path) -> None:
    retriever = ColmaxRetriever.from_defaults(
        nodes=nodes, model=tiny_model, device="cpu", explain=True
    )
    retriever.persist(tmp_path / "p")
    loaded = ColmaxRetriever.from_persist_dir(tmp_path / "p", device="cpu")
    assert loaded.explain is True
    assert KEY in loaded.retrieve(QUERY)[0].node.metadata
    assert ColmaxRetriever.from_persist_dir(tmp_path / "p", explain=False).explain is False
    with pytest.raises(TypeError, match="explain"):
        ColmaxRetriever(loaded.engine, explain="yes")  # type: ignore[arg-type]


def test_include_images_is_persisted(
    tiny_model: Path, nodes: list[TextNode], tmp_path: Path
) -> None:
    retriever = ColmaxRetriever.from_defaults(nodes=nodes, model=tiny_model, device="cpu")
    retriever.include_images = True
    retriever.persist(tmp_path / "p")
    assert ColmaxRetriever.from_persist_dir(tmp_path / "p", device="cpu").include_images is True
    loaded = ColmaxRetriever.from_persist_dir(tmp_path / "p", include_images=False)
    assert loaded.include_images is False  # an override, like the other settings
    # A folder saved before the setting was kept reads as the default.
    config_path = tmp_path / "p" / "retriever.json"
    config = json.loads(config_path.read_text())
    del config["include_images"]
    config_path.write_text(json.dumps(config))
    assert ColmaxRetriever.from_persist_dir(tmp_path / "p").include_images is False


def test_insert_nodes_pools(tiny_model: Path, nodes: list[TextNode]) -> None:
    retriever = ColmaxRetriever.from_defaults(
        nodes=nodes[:3], model=tiny_model, device="cpu", pool_factor=2
    )
    engine = retriever.engine
    texts = [n.get_content(metadata_mode=MetadataMode.EMBED) for n in nodes]
    full = [len(v) for v in engine.encoder.encode_documents(texts)]  # type: ignore[union-attr]
    ids = [n.node_id for n in nodes]
    stored = [len(v) for v in engine.backend.get_vectors(ids[:3])]
    assert stored == [-(-n // 2) for n in full[:3]]
    retriever.insert_nodes(nodes[3:], pool_factor=3)
    assert [len(v) for v in engine.backend.get_vectors(ids[3:])] == [-(-n // 3) for n in full[3:]]
    # A pooled node is still explained token by token (its text is encoded again).
    retriever.explain = True
    for r in retriever.retrieve(QUERY):
        assert any(m["doc_span"] is not None for m in r.node.metadata[KEY]["matches"])


@pytest.mark.parametrize("mode", ["rrf", "minmax", "rerank"])
def test_hybrid_retrieval(tiny_model: Path, nodes: list[TextNode], mode: str) -> None:
    retriever = ColmaxRetriever.from_defaults(
        nodes=nodes, model=tiny_model, device="cpu", similarity_top_k=3, hybrid=mode
    )
    query = "paris capital search engine"
    results = retriever.retrieve(query)
    hits = retriever.engine.search(query, k=3, hybrid=mode)
    assert [(r.node.node_id, r.score) for r in results] == [(h.id, h.score) for h in hits]  # type: ignore[union-attr]
    for r, hit in zip(results, hits):
        assert r.node.metadata["colmax_scores"] == hit.scores  # type: ignore[union-attr]
        assert "colmax_scores" not in r.node.get_content(metadata_mode=MetadataMode.LLM)
    assert any("bm25" in r.node.metadata["colmax_scores"] for r in results)


def test_hybrid_settings_persist_and_are_checked(
    tiny_model: Path, nodes: list[TextNode], tmp_path: Path
) -> None:
    retriever = ColmaxRetriever.from_defaults(
        nodes=nodes, model=tiny_model, device="cpu", hybrid="minmax"
    )
    retriever.hybrid_weight = 0.8
    retriever.persist(tmp_path / "p")
    loaded = ColmaxRetriever.from_persist_dir(tmp_path / "p", device="cpu")
    assert (loaded.hybrid, loaded.hybrid_weight) == ("minmax", 0.8)
    with pytest.raises(ValueError, match="hybrid must be"):
        ColmaxRetriever(loaded.engine, hybrid="bm25")
    with pytest.raises(ValueError, match="weight must be"):
        ColmaxRetriever(loaded.engine, hybrid="rrf", hybrid_weight=2.0)
