"""ColmaxRetriever: late-interaction (ColBERT / MaxSim) retrieval as a LlamaIndex retriever."""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.callbacks.base import CallbackManager
from llama_index.core.constants import DEFAULT_SIMILARITY_TOP_K
from llama_index.core.indices.base import BaseIndex
from llama_index.core.schema import BaseNode, IndexNode, MetadataMode, NodeWithScore, QueryBundle
from llama_index.core.storage.docstore.types import BaseDocumentStore
from llama_index.core.vector_stores.types import MetadataFilters
from llama_index.retrievers.colmax.filters import to_colmax_filter
from llama_index.retrievers.colmax.nodes import hit_to_node, nodes_to_records

from colmax import Engine, Hit
from colmax.errors import IndexFormatError
from colmax.hybrid import check_hybrid

__all__ = ["ColmaxRetriever"]

logger = logging.getLogger(__name__)

ENGINE_DIR = "engine"
CONFIG_FILE = "retriever.json"
_FORMAT = "llama-index-retrievers-colmax"
_FORMAT_VERSION = 1


class ColmaxRetriever(BaseRetriever):
    """Retrieve nodes by exact MaxSim over ColBERT-style token vectors (a ``colmax.Engine``).

    Every node is one engine document: its id is the node id, its text (encoded) is
    ``node.get_content(metadata_mode)``, and the whole node is kept in the engine's metadata,
    so retrieved nodes come back with their id, class, text, metadata and relationships
    (``ref_doc_id`` included). Scores are the engine's raw MaxSim sums (see the colmax README).
    A ``QueryBundle`` with ``custom_embedding_strs`` (HyDE and other query transforms) is
    searched with those strings instead of ``query_str``, each on its own; a node keeps its
    best score over them.

    Args:
        engine: the engine holding the nodes (possibly empty; see :meth:`insert_nodes`).
        similarity_top_k: how many nodes to return.
        filters: metadata filters applied to every query (see ``filters.to_colmax_filter``).
        metadata_mode: which metadata goes into the encoded text of inserted nodes; use the
            same mode in ``ColmaxRerank`` so it can reuse the stored vectors.
        explain: add ``node.metadata["colmax_explanation"]`` (``Explanation.to_dict()``:
            which query token matched which span of the encoded text, and the best passage)
            to every retrieved node; the key is excluded from the LLM and embedding views.
        hybrid: ``"rrf"``, ``"minmax"`` or ``"rerank"`` to fuse MaxSim with BM25 over the
            stored texts (needs ``colmax[hybrid]``): ``NodeWithScore.score`` is then the fused
            score and ``node.metadata["colmax_scores"]`` holds each side's own.
        hybrid_candidates, hybrid_weight: hits taken from each side before fusing, and the
            weight of the late-interaction side (see ``colmax.Engine.search``).
        group_chunks: one node per chunked document (its best chunk), as every colmax door
            returns them (see ``colmax.Engine.search``).
        include_images: page hits (``Engine.add_files``: PDF pages, images) come back as
            ``ImageNode`` with ``image_path`` set; this adds the base64 ``image`` too.
        callback_manager, object_map, objects, verbose: as for any LlamaIndex retriever.

    Raises:
        ValueError: ``similarity_top_k`` is not a positive integer, or the filters use an
            operator colmax cannot evaluate.

    Examples:
        >>> retriever = ColmaxRetriever.from_defaults(  # doctest: +SKIP
        ...     nodes=nodes, model="answerdotai/answerai-colbert-small-v1", similarity_top_k=5
        ... )
        >>> retriever.retrieve("what is late interaction?")  # doctest: +SKIP
    """

    def __init__(
        self,
        engine: Engine,
        *,
        similarity_top_k: int = DEFAULT_SIMILARITY_TOP_K,
        filters: MetadataFilters | None = None,
        metadata_mode: MetadataMode = MetadataMode.EMBED,
        explain: bool = False,
        hybrid: str | None = None,
        hybrid_candidates: int = 100,
        hybrid_weight: float = 0.5,
        group_chunks: bool = True,
        include_images: bool = False,
        callback_manager: CallbackManager | None = None,
        object_map: dict | None = None,
        objects: list[IndexNode] | None = None,
        verbose: bool = False,
    ) -> None:
        if not isinstance(engine, Engine):
            raise TypeError(f"engine must be a colmax.Engine, got {type(engine).__name__}")
        self._engine = engine
        self.similarity_top_k = similarity_top_k
        self.filters = filters
        self.metadata_mode = MetadataMode(metadata_mode)
        if not isinstance(explain, bool):
            raise TypeError(f"explain must be True or False, got {explain!r}")
        self.explain = explain
        if hybrid is not None:  # the same checks as Engine.search, before any query
            check_hybrid(hybrid, hybrid_candidates, hybrid_weight, text_query=True)
        self.hybrid = hybrid
        self.hybrid_candidates = hybrid_candidates
        self.hybrid_weight = hybrid_weight
        if not isinstance(group_chunks, bool):
            raise TypeError(f"group_chunks must be True or False, got {group_chunks!r}")
        self.group_chunks = group_chunks
        self.include_images = bool(include_images)
        super().__init__(
            callback_manager=callback_manager,
            object_map=object_map,
            objects=objects,
            verbose=verbose,
        )

    # ------------------------------------------------------------------ construction
    @classmethod
    def from_defaults(
        cls,
        nodes: Sequence[BaseNode] | None = None,
        index: BaseIndex | None = None,
        docstore: BaseDocumentStore | None = None,
        *,
        model: str | Path | None = None,
        engine: Engine | None = None,
        path: str | Path | None = None,
        device: str | None = None,
        similarity_top_k: int = DEFAULT_SIMILARITY_TOP_K,
        filters: MetadataFilters | None = None,
        metadata_mode: MetadataMode = MetadataMode.EMBED,
        explain: bool = False,
        hybrid: str | None = None,
        skip_empty: bool = True,
        show_progress: bool = False,
        pool_factor: int = 1,
        callback_manager: CallbackManager | None = None,
        **encoder_kwargs: Any,
    ) -> ColmaxRetriever:
        """Index nodes from exactly one source and return a retriever over them.

        Args:
            nodes: the nodes to index.
            index: a LlamaIndex index whose docstore holds its nodes (e.g. a ``VectorStoreIndex``
                over the default vector store).
            docstore: a document store; every node in it is indexed.
            model: a Hub id or local folder of a ColBERT/PyLate/HF checkpoint (with ``path``,
                ``device`` and ``encoder_kwargs`` passed to ``Engine.from_pretrained``).
            engine: an existing engine to add the nodes to, instead of ``model``.
            path: keep the engine in this folder (every insert/delete is committed durably).
            skip_empty: skip nodes whose text is empty (logged) instead of raising.
            show_progress: show the encoder's progress bar.
            pool_factor: token pooling of the inserted nodes (see :meth:`insert_nodes`).
            similarity_top_k, filters, metadata_mode, explain, hybrid, callback_manager: see
                the class.

        Raises:
            ValueError: not exactly one of ``nodes``/``index``/``docstore``, not exactly one of
                ``model``/``engine``, model settings given with ``engine``, or an index whose
                docstore holds no nodes.
        """
        sources = sum(source is not None for source in (nodes, index, docstore))
        if sources != 1:
            raise ValueError(
                f"pass exactly one of nodes=, index= or docstore= (got {sources}); to start "
                "empty, use ColmaxRetriever(engine=Engine.from_pretrained(model))"
            )
        if (model is None) == (engine is None):
            raise ValueError("pass exactly one of model= (a checkpoint) or engine= (an Engine)")
        if engine is not None and (path is not None or device is not None or encoder_kwargs):
            raise ValueError("path=, device= and encoder settings go with model=, not engine=")
        if index is not None:
            node_list = _nodes_of_index(index)
        elif docstore is not None:
            node_list = list(docstore.docs.values())
        else:
            node_list = list(nodes or [])
        if engine is None:
            engine = Engine.from_pretrained(model, path=path, device=device, **encoder_kwargs)  # type: ignore[arg-type]
        retriever = cls(
            engine,
            similarity_top_k=similarity_top_k,
            filters=filters,
            metadata_mode=metadata_mode,
            explain=explain,
            hybrid=hybrid,
            callback_manager=callback_manager,
        )
        retriever.insert_nodes(
            node_list, skip_empty=skip_empty, show_progress=show_progress, pool_factor=pool_factor
        )
        return retriever

    # ------------------------------------------------------------------ settings
    @property
    def engine(self) -> Engine:
        """The colmax engine (share it with ``ColmaxRerank(engine=...)`` to reuse vectors)."""
        return self._engine

    @property
    def similarity_top_k(self) -> int:
        return self._similarity_top_k

    @similarity_top_k.setter
    def similarity_top_k(self, value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
            raise ValueError(f"similarity_top_k must be a positive integer, got {value!r}")
        self._similarity_top_k = value

    @property
    def filters(self) -> MetadataFilters | None:
        return self._filters

    @filters.setter
    def filters(self, value: MetadataFilters | None) -> None:
        if value is not None and not isinstance(value, MetadataFilters):
            raise TypeError(f"filters must be MetadataFilters or None, got {type(value).__name__}")
        to_colmax_filter(value)  # validates before anything is kept
        # Translated again at each retrieve: the filters may be edited in place meanwhile
        # (``retriever.filters.filters.append(...)``), and a cached translation would miss it.
        self._filters = value

    # ------------------------------------------------------------------ writes
    def insert_nodes(
        self,
        nodes: Sequence[BaseNode],
        *,
        skip_empty: bool = True,
        show_progress: bool = False,
        pool_factor: int = 1,
    ) -> list[str]:
        """Encode and add nodes; a node whose id is already indexed is replaced.

        ``pool_factor > 1`` stores ``ceil(n / pool_factor)`` cluster means of each node's
        ``n`` token vectors (token pooling; needs ``colmax[pooling]``).

        Returns:
            The ids written (nodes with empty text are skipped and logged when ``skip_empty``).

        Raises:
            DuplicateIdError: the same node id twice in ``nodes`` (nothing is written).
            EmptyTextError: a node's text is empty and ``skip_empty`` is false.
        """
        ids, texts, metadatas = nodes_to_records(nodes, self.metadata_mode)
        if not ids:
            return []
        return self._engine.add(
            texts,
            ids=ids,
            metadatas=metadatas,
            skip_empty=skip_empty,
            show_progress=show_progress,
            pool_factor=pool_factor,
        )

    def delete_nodes(self, node_ids: Sequence[str]) -> int:
        """Delete nodes by id; returns how many were deleted.

        Raises:
            UnknownIdError: some ids are not indexed (then nothing is deleted).
        """
        return self._engine.delete(list(node_ids))

    def delete_ref_doc(self, ref_doc_id: str) -> int:
        """Delete every node whose source document is ``ref_doc_id``; returns how many."""
        if not isinstance(ref_doc_id, str) or not ref_doc_id:
            raise ValueError(f"ref_doc_id must be a non-empty string, got {ref_doc_id!r}")
        return self._engine.delete(filter={"ref_doc_id": ref_doc_id})

    # ------------------------------------------------------------------ persistence
    def persist(self, persist_dir: str | Path) -> Path:
        """Save the engine to ``persist_dir/engine`` and the settings to ``retriever.json``.

        Saving again to the same folder replaces its contents.
        """
        folder = Path(persist_dir)
        folder.mkdir(parents=True, exist_ok=True)
        self._engine.save(folder / ENGINE_DIR)
        config = {
            "format": _FORMAT,
            "format_version": _FORMAT_VERSION,
            "similarity_top_k": self.similarity_top_k,
            "metadata_mode": self.metadata_mode.value,
            "explain": self.explain,
            "hybrid": self.hybrid,
            "hybrid_candidates": self.hybrid_candidates,
            "hybrid_weight": self.hybrid_weight,
            "group_chunks": self.group_chunks,
            "include_images": self.include_images,
            "filters": self._filters.model_dump(mode="json") if self._filters else None,
        }
        staging = folder / f".{CONFIG_FILE}.tmp"
        staging.write_text(json.dumps(config, indent=2), encoding="utf-8")
        os.replace(staging, folder / CONFIG_FILE)
        return folder

    @classmethod
    def from_persist_dir(
        cls,
        persist_dir: str | Path,
        *,
        device: str | None = None,
        similarity_top_k: int | None = None,
        filters: MetadataFilters | None = None,
        explain: bool | None = None,
        include_images: bool | None = None,
        callback_manager: CallbackManager | None = None,
    ) -> ColmaxRetriever:
        """Load a retriever saved by :meth:`persist` (the engine reloads its own model).

        ``similarity_top_k``, ``filters``, ``explain`` and ``include_images`` override the
        saved settings when given (a folder saved before ``include_images`` was kept reads as
        ``False``, the default). ``filters=None`` keeps the saved filters: to search every node
        instead, pass ``MetadataFilters(filters=[])`` (or set ``retriever.filters = None``).

        Raises:
            IndexFormatError: the folder was not written by :meth:`persist`.
        """
        folder = Path(persist_dir)
        config = _read_config(folder / CONFIG_FILE)
        if similarity_top_k is None:
            similarity_top_k = int(config["similarity_top_k"])
        if filters is None and config.get("filters"):
            filters = MetadataFilters.model_validate(config["filters"])
        return cls(
            Engine.load(folder / ENGINE_DIR, device=device),
            similarity_top_k=similarity_top_k,
            filters=filters,
            metadata_mode=MetadataMode(config["metadata_mode"]),
            explain=bool(config.get("explain", False)) if explain is None else explain,
            hybrid=config.get("hybrid"),
            hybrid_candidates=int(config.get("hybrid_candidates", 100)),
            hybrid_weight=float(config.get("hybrid_weight", 0.5)),
            group_chunks=bool(config.get("group_chunks", True)),
            include_images=(
                bool(config.get("include_images", False))
                if include_images is None
                else include_images
            ),
            callback_manager=callback_manager,
        )

    # ------------------------------------------------------------------ retrieval
    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        queries = _search_strs(query_bundle)
        results = self._engine.search(
            queries,
            k=self.similarity_top_k,
            filter=to_colmax_filter(self._filters),
            explain=self.explain,
            hybrid=self.hybrid,  # the engine ignores the next two without it
            candidates=self.hybrid_candidates,
            weight=self.hybrid_weight,
            group_chunks=self.group_chunks,
        )
        hits = _best_of(results, self.similarity_top_k)
        return [
            NodeWithScore(
                node=hit_to_node(hit, self._engine, include_image=self.include_images),
                score=hit.score,
            )
            for hit in hits
        ]

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        # Encoding and MaxSim are CPU/GPU-bound: run them in a worker thread so the event loop
        # keeps serving other requests (the engine is safe for concurrent searches).
        return await asyncio.to_thread(self._retrieve, query_bundle)


def _search_strs(query_bundle: QueryBundle) -> list[str]:
    """The texts to search with: ``custom_embedding_strs`` when set (HyDE's hypothetical
    document, a rewritten query, ...), as LlamaIndex's vector retrievers embed
    ``query_bundle.embedding_strs``; else the query string."""
    strs = list(dict.fromkeys(query_bundle.custom_embedding_strs or []))
    return strs or [query_bundle.query_str]


def _best_of(results: list[list[Hit]], k: int) -> list[Hit]:
    """The best ``k`` hits of several searches, each document once with its best score.

    LlamaIndex averages the single vectors of several embedding strings into one query
    vector; a multi-vector query has no such mean, and joining the strings into one query
    would be cut at the encoder's query length (losing HyDE's original query, which comes
    last). So each string is searched on its own and a document keeps the hit (score and
    explanation) of the string it matches best: the strings' results fused by maximum.
    Raw MaxSim grows with the number of query vectors; ColBERT checkpoints pad every query
    to the same length (``[MASK]`` augmentation), so the strings' scores compare.
    """
    best: dict[str, Hit] = {}
    for hits in results:
        for hit in hits:
            if hit.id not in best or hit.score > best[hit.id].score:
                best[hit.id] = hit
    # Stable: equal scores keep the order in which the searches first found the documents.
    ranked = sorted(best.values(), key=lambda h: -h.score)[:k]
    return [replace(h, rank=rank) for rank, h in enumerate(ranked)]


def _nodes_of_index(index: BaseIndex) -> list[BaseNode]:
    struct = index.index_struct
    node_ids = getattr(struct, "nodes_dict", None)  # IndexDict: vector id -> node id
    listed = list(node_ids.values()) if node_ids else list(getattr(struct, "nodes", None) or [])
    nodes = index.docstore.get_nodes(listed) if listed else list(index.docstore.docs.values())
    if not nodes:
        raise ValueError(
            "the index keeps no nodes in its docstore (its vector store holds the text); "
            "pass nodes=... instead"
        )
    return nodes


def _read_config(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise IndexFormatError(
            f"{path} is missing: not a folder written by ColmaxRetriever.persist"
        )
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise IndexFormatError(f"{path} is not valid JSON ({exc})") from exc
    if not isinstance(config, dict) or config.get("format") != _FORMAT:
        raise IndexFormatError(f"{path} was not written by ColmaxRetriever.persist")
    if config.get("format_version") != _FORMAT_VERSION:
        raise IndexFormatError(
            f"{path} has format version {config.get('format_version')!r}; this version of "
            f"llama-index-retrievers-colmax reads version {_FORMAT_VERSION}"
        )
    return config
