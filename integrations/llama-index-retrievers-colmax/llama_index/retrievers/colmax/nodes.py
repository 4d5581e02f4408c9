"""LlamaIndex nodes to colmax engine records and back.

A node is stored as one engine document: its id is the node id, its text is what gets encoded
(``node.get_content(metadata_mode)``), and its metadata is the node's own metadata (so filters
see the node's fields) plus LlamaIndex's usual bookkeeping keys (``_node_content``: the whole
node as JSON, ``_node_type``, ``ref_doc_id``/``doc_id``/``document_id``), written by
``node_to_metadata_dict`` exactly as LlamaIndex vector stores do. Reading a hit back therefore
restores the node with its class, text, metadata and relationships (``ref_doc_id`` included).
Documents added to the engine directly (without these keys) come back as plain ``TextNode``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from llama_index.core.schema import BaseNode, MetadataMode, TextNode
from llama_index.core.vector_stores.utils import metadata_dict_to_node, node_to_metadata_dict

from colmax import Hit
from colmax.types import EXPLANATION_KEY, SCORES_KEY

__all__ = [
    "EXPLANATION_KEY",
    "NODE_CONTENT_KEY",
    "SCORES_KEY",
    "hit_to_node",
    "nodes_to_records",
    "with_hit_extras",
]

#: The metadata key holding the serialised node (LlamaIndex's own name for it).
NODE_CONTENT_KEY = "_node_content"


def nodes_to_records(
    nodes: Sequence[BaseNode], metadata_mode: MetadataMode
) -> tuple[list[str], list[str], list[dict[str, Any]]]:
    """Ids, texts to encode and metadata dicts for ``Engine.add``; the nodes are not modified.

    Raises:
        TypeError: an element is not a LlamaIndex node.
    """
    ids, texts, metadatas = [], [], []
    for node in nodes:
        if not isinstance(node, BaseNode):
            raise TypeError(f"expected LlamaIndex nodes (BaseNode), got {type(node).__name__}")
        ids.append(node.node_id)
        texts.append(node.get_content(metadata_mode=metadata_mode))
        metadatas.append(node_to_metadata_dict(node, remove_text=False, flat_metadata=False))
    return ids, texts, metadatas


def hit_to_node(hit: Hit) -> BaseNode:
    """The node a hit was stored from (a plain ``TextNode`` for documents added directly),
    with the hit's explanation and hybrid scores when it has them (see
    :func:`with_hit_extras`)."""
    if NODE_CONTENT_KEY in hit.metadata:
        node = metadata_dict_to_node(hit.metadata)
    else:
        node = TextNode(id_=hit.id, text=hit.text, metadata=hit.metadata)
    return with_hit_extras(node, hit)


def with_hit_extras(node: BaseNode, hit: Hit) -> BaseNode:
    """``node``, or a copy with ``metadata["colmax_explanation"]`` / ``["colmax_scores"]``
    from ``hit``. The keys are excluded from the LLM and embedding views of the node, so
    the explanation never ends up in a prompt or in encoded text."""
    extras = hit.extras()
    if not extras:
        return node

    def excluded(keys: list[str]) -> list[str]:
        return [*keys, *(k for k in extras if k not in keys)]

    return node.model_copy(
        update={
            "metadata": {**node.metadata, **extras},
            "excluded_llm_metadata_keys": excluded(node.excluded_llm_metadata_keys),
            "excluded_embed_metadata_keys": excluded(node.excluded_embed_metadata_keys),
        }
    )
