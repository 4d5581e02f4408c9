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

import base64
from collections.abc import Sequence
from typing import Any

from llama_index.core.schema import BaseNode, ImageNode, MetadataMode, TextNode
from llama_index.core.vector_stores.utils import metadata_dict_to_node, node_to_metadata_dict

from colmax import Engine, Hit
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


def hit_to_node(hit: Hit, engine: Engine | None = None, *, include_image: bool = False) -> BaseNode:
    """The node a hit was stored from (a plain ``TextNode`` for documents added directly),
    with the hit's explanation and hybrid scores when it has them (see
    :func:`with_hit_extras`).

    A page hit (``Engine.add_files`` / ``add(images=...)``) with ``engine`` given becomes an
    ``ImageNode``: its text is the page's text layer, ``image_path`` the stored page image
    (index folders), and ``image`` the base64 image with ``include_image`` (always for an
    in-memory engine, which has no file to point at), so a multimodal query engine can use it.
    """
    if NODE_CONTENT_KEY in hit.metadata:
        node = metadata_dict_to_node(hit.metadata)
    elif engine is not None and hit.is_page:
        node = _image_node(hit, engine, include_image)
    else:
        node = TextNode(id_=hit.id, text=hit.text, metadata=hit.metadata)
    return with_hit_extras(node, hit)


def _image_node(hit: Hit, engine: Engine, include_image: bool) -> ImageNode:
    path = engine.page_image_path(hit.id)
    image = None
    if include_image or path is None:
        data, mime = engine.page_image_bytes(hit.id)
        image = base64.b64encode(data).decode("ascii")
    else:
        mime = engine.page_image_mime_type(hit.id)
    return ImageNode(
        id_=hit.id,
        text=hit.text,
        metadata=hit.metadata,
        image=image,
        image_path=str(path) if path is not None else None,
        image_mimetype=mime,
    )


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
