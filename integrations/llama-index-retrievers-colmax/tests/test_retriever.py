"""ColmaxRetriever over the tiny colbert-ai checkpoint: sources, round trips, writes, persistence."""

from __future__ import annotations

import json
from pathlib import Path

import llama_index.retrievers.colmax as package
import pytest
from llama_index.core import VectorStoreIndex
from llama_index.core.embeddings import MockEmbedding
from llama_index.core.schema import IndexNode, MetadataMode, QueryBundle, TextNode
from llama_index.core.storage.docstore import SimpleDocumentStore
from llama_index.core.vector_stores import MetadataFilter, MetadataFilters
from llama_index.retrievers.colmax import ColmaxRetriever

from colmax import Engine
from colmax.errors import DuplicateIdError, EmptyTextError, IndexFormatError, UnknownIdError


def _retriever(tiny_model: Path, nodes: list, **kwargs: object) -> ColmaxRetriever:
    return ColmaxRetriever.from_defaults(nodes=nodes, model=tiny_model, device="cpu", **kwargs)


def _ids(results: list) -> list[str]:
    return [r.node.node_id for r in results]


def _stored(node: object) -> dict:
    return node.model_dump(exclude={"embedding"})  # type: ignore[attr-defined]


def test_public_api() -> None:
    assert package.__all__ == ["ColmaxRetriever", "to_colmax_filter"]


def test_nodes_come_back_whole(tiny_model: Path, nodes: list[TextNode]) -> None:
    before = [_stored(n) for n in nodes]
    retriever = _retriever(tiny_model, nodes, similarity_top_k=100)
    results = retriever.retrieve("the cat sat on the mat")
    assert len(results) == len(nodes)  # k larger than the corpus is clamped
    hits = retriever.engine.search("the cat sat on the mat", k=100)
    assert [(r.node.node_id, r.score) for r in results] == [(h.id, h.score) for h in hits]
    by_id = {r.node.node_id: r.node for r in results}
    for node in nodes:
        got = by_id[node.node_id]
        assert type(got) is TextNode and _stored(got) == _stored(node)
        assert got.ref_doc_id == node.ref_doc_id and got.ref_doc_id.startswith("doc")
    assert [_stored(n) for n in nodes] == before  # the caller's nodes are untouched


def test_encoded_text_follows_metadata_mode(tiny_model: Path) -> None:
    node = TextNode(
        id_="a",
        text="the cat sat",
        metadata={"lang": "en", "secret": "x"},
        excluded_embed_metadata_keys=["secret"],
    )
    embed = _retriever(tiny_model, [node])
    assert embed.engine.get(["a"])[0].text == node.get_content(metadata_mode=MetadataMode.EMBED)
    assert "lang: en" in embed.engine.get(["a"])[0].text
    assert "secret" not in embed.engine.get(["a"])[0].text
    plain = _retriever(tiny_model, [node], metadata_mode=MetadataMode.NONE)
    assert plain.engine.get(["a"])[0].text == "the cat sat"
    assert plain.retrieve("cat")[0].node.get_content() == "the cat sat"


def test_exactly_one_source_and_one_model(tiny_model: Path, nodes: list[TextNode]) -> None:
    with pytest.raises(ValueError, match="exactly one of nodes="):
        ColmaxRetriever.from_defaults(model=tiny_model)
    with pytest.raises(ValueError, match="exactly one of nodes="):
        ColmaxRetriever.from_defaults(nodes=nodes, docstore=SimpleDocumentStore(), model=tiny_model)
    with pytest.raises(ValueError, match="model="):
        ColmaxRetriever.from_defaults(nodes=nodes)
    engine = Engine.from_pretrained(tiny_model, device="cpu")
    with pytest.raises(ValueError, match="model="):
        ColmaxRetriever.from_defaults(nodes=nodes, model=tiny_model, engine=engine)
    with pytest.raises(ValueError, match="go with model="):
        ColmaxRetriever.from_defaults(nodes=nodes, engine=engine, device="cpu")
    with pytest.raises(TypeError, match="Engine"):
        ColmaxRetriever("not an engine")  # type: ignore[arg-type]


def test_from_index_and_from_docstore(tiny_model: Path, nodes: list[TextNode]) -> None:
    index = VectorStoreIndex(nodes[:4], embed_model=MockEmbedding(embed_dim=8))
    from_index = ColmaxRetriever.from_defaults(index=index, model=tiny_model, device="cpu")
    assert sorted(from_index.engine.ids()) == ["n0", "n1", "n2", "n3"]
    docstore = SimpleDocumentStore()
    docstore.add_documents(nodes)
    from_docstore = ColmaxRetriever.from_defaults(docstore=docstore, model=tiny_model)
    assert sorted(from_docstore.engine.ids()) == sorted(n.node_id for n in nodes)
    for result in from_docstore.retrieve("paris capital france"):
        assert result.node.ref_doc_id == f"doc{int(result.node.node_id[1:]) // 2}"


def test_wraps_an_engine_filled_directly(tiny_model: Path) -> None:
    engine = Engine.from_pretrained(tiny_model, device="cpu")
    engine.add(["the cat sat", "a dog ran"], ids=["x", "y"], metadatas=[{"k": 1}, None])
    retriever = ColmaxRetriever(engine, similarity_top_k=1)
    [hit] = retriever.retrieve("the cat")
    assert type(hit.node) is TextNode and hit.node.node_id == "x"
    assert hit.node.get_content() == "the cat sat" and hit.node.metadata == {"k": 1}


def test_insert_and_delete_after_creation(tiny_model: Path, nodes: list[TextNode]) -> None:
    retriever = _retriever(tiny_model, nodes[:3], similarity_top_k=10)
    assert retriever.insert_nodes(nodes[3:]) == [n.node_id for n in nodes[3:]]
    assert sorted(_ids(retriever.retrieve("search"))) == sorted(n.node_id for n in nodes)
    # Upsert: the same id with new text replaces the node.
    retriever.insert_nodes([TextNode(id_="n0", text="paris is the capital of france")])
    assert len(retriever.engine) == len(nodes)
    assert retriever.engine.get(["n0"])[0].text == "paris is the capital of france"

    assert retriever.delete_nodes(["n1", "n4"]) == 2
    left = _ids(retriever.retrieve("a dog ran in the house"))
    assert "n1" not in left and "n4" not in left and len(left) == len(nodes) - 2
    with pytest.raises(UnknownIdError):  # a KeyError; nothing is deleted
        retriever.delete_nodes(["n2", "missing"])
    assert "n2" in retriever.engine

    assert retriever.delete_ref_doc("doc1") == 2  # n2 and n3
    assert retriever.delete_ref_doc("doc1") == 0
    assert sorted(retriever.engine.ids()) == ["n0", "n5"]


def test_bad_inserts_write_nothing(tiny_model: Path, nodes: list[TextNode]) -> None:
    retriever = _retriever(tiny_model, nodes[:2])
    with pytest.raises(DuplicateIdError):
        retriever.insert_nodes([nodes[3], nodes[3]])
    with pytest.raises(EmptyTextError):
        retriever.insert_nodes([nodes[4], TextNode(id_="e", text=" ")], skip_empty=False)
    assert sorted(retriever.engine.ids()) == ["n0", "n1"]
    assert retriever.insert_nodes([TextNode(id_="e", text=""), nodes[4]]) == ["n4"]
    with pytest.raises(TypeError, match="BaseNode"):
        retriever.insert_nodes(["just a string"])  # type: ignore[list-item]
    assert retriever.insert_nodes([]) == []


def test_index_nodes_lead_to_their_objects(tiny_model: Path, nodes: list[TextNode]) -> None:
    # An IndexNode comes back as an IndexNode, so LlamaIndex's recursive retrieval follows it.
    inner = _retriever(tiny_model, nodes[2:4], similarity_top_k=1)
    pointer = IndexNode(id_="ptr", text="paris is the capital of france", index_id="inner")
    outer = ColmaxRetriever.from_defaults(nodes=[pointer], model=tiny_model)
    [stored] = outer._retrieve(QueryBundle("paris"))
    assert type(stored.node) is IndexNode and stored.node.index_id == "inner"
    outer.object_map = {"inner": inner}
    assert _ids(outer.retrieve("paris")) == _ids(inner.retrieve("paris"))
    assert _ids(inner.retrieve("paris"))[0] in {"n2", "n3"}


def test_similarity_top_k_is_validated(tiny_model: Path, nodes: list[TextNode]) -> None:
    retriever = _retriever(tiny_model, nodes, similarity_top_k=3)
    assert len(retriever.retrieve("the cat")) == 3
    retriever.similarity_top_k = 1
    assert len(retriever.retrieve("the cat")) == 1
    for bad in (0, -1, 2.5, True):
        with pytest.raises(ValueError, match="similarity_top_k"):
            retriever.similarity_top_k = bad  # type: ignore[assignment]


def test_custom_embedding_strs_are_searched(tiny_model: Path, nodes: list[TextNode]) -> None:
    # HyDE and other query transforms put the text to search with in custom_embedding_strs
    # (LlamaIndex's vector retrievers embed query_bundle.embedding_strs): each string is
    # searched, and a node keeps its best score over the strings.
    retriever = _retriever(tiny_model, nodes, similarity_top_k=3)
    strs = ["paris is the capital of france", "the red car"]
    best: dict[str, float] = {}
    for hits in retriever.engine.search(strs, k=3):
        for hit in hits:
            best[hit.id] = max(best.get(hit.id, hit.score), hit.score)
    expected = sorted(best.items(), key=lambda item: -item[1])[:3]
    results = retriever.retrieve(QueryBundle(query_str="hello world", custom_embedding_strs=strs))
    assert _ids(results) == [node_id for node_id, _ in expected]
    assert [r.score for r in results] == pytest.approx([score for _, score in expected])

    one = retriever.retrieve(QueryBundle(query_str="hello world", custom_embedding_strs=strs[:1]))
    alone = retriever.engine.search(strs[0], k=3)
    assert [(r.node.node_id, r.score) for r in one] == [(h.id, h.score) for h in alone]
    plain = [h.score for h in retriever.engine.search("hello world", k=3)]
    assert [r.score for r in one] != pytest.approx(plain)  # not the query string's search
    # No custom strings: the query string, as before.
    assert _ids(retriever.retrieve(QueryBundle(query_str="hello world"))) == [
        h.id for h in retriever.engine.search("hello world", k=3)
    ]


def test_persist_round_trip(tiny_model: Path, nodes: list[TextNode], tmp_path: Path) -> None:
    filters = MetadataFilters(filters=[MetadataFilter(key="lang", value="en")])
    retriever = _retriever(
        tiny_model, nodes, similarity_top_k=2, filters=filters, metadata_mode=MetadataMode.NONE
    )
    folder = retriever.persist(tmp_path / "saved")
    assert sorted(p.name for p in folder.iterdir()) == ["engine", "retriever.json"]
    assert json.loads((folder / "retriever.json").read_text())["similarity_top_k"] == 2

    loaded = ColmaxRetriever.from_persist_dir(folder, device="cpu")
    assert loaded.similarity_top_k == 2 and loaded.filters == filters
    assert loaded.metadata_mode == MetadataMode.NONE
    query = "the red car and the blue car"
    before, after = retriever.retrieve(query), loaded.retrieve(query)
    assert _ids(after) == _ids(before) and len(after) == 2
    assert {r.node.metadata["lang"] for r in after} == {"en"}
    assert [r.score for r in after] == pytest.approx([r.score for r in before], abs=1e-4)
    assert [_stored(r.node) for r in after] == [_stored(r.node) for r in before]

    # The loaded copy is independent and can be written to and persisted again in place.
    loaded.insert_nodes([TextNode(id_="new", text="the red car", metadata={"lang": "en"})])
    loaded.delete_nodes(["n3"])
    assert "new" not in retriever.engine and "n3" in retriever.engine
    loaded.persist(folder)
    again = ColmaxRetriever.from_persist_dir(folder, similarity_top_k=5, filters=None)
    assert again.similarity_top_k == 5 and sorted(again.engine.ids()) == sorted(
        {n.node_id for n in nodes} - {"n3"} | {"new"}
    )
    assert again.filters == filters  # None keeps the saved filters; empty ones clear them
    unfiltered = ColmaxRetriever.from_persist_dir(folder, filters=MetadataFilters(filters=[]))
    every = {n.node_id for n in nodes} - {"n3"} | {"new"}
    unfiltered.similarity_top_k = len(every)
    assert {r.node.node_id for r in unfiltered.retrieve(query)} == every


def test_from_persist_dir_rejects_other_folders(tmp_path: Path) -> None:
    with pytest.raises(IndexFormatError, match=r"retriever\.json is missing"):
        ColmaxRetriever.from_persist_dir(tmp_path)
    (tmp_path / "retriever.json").write_text('{"format": "something else"}')
    with pytest.raises(IndexFormatError, match="not written by"):
        ColmaxRetriever.from_persist_dir(tmp_path)
