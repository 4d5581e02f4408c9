"""ColmaxRerank: rerank LlamaIndex nodes with late interaction (ColBERT / MaxSim)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from llama_index.core.bridge.pydantic import Field, PrivateAttr
from llama_index.core.callbacks import CallbackManager, CBEventType, EventPayload
from llama_index.core.instrumentation import get_dispatcher
from llama_index.core.instrumentation.events.rerank import ReRankEndEvent, ReRankStartEvent
from llama_index.core.postprocessor.types import BaseNodePostprocessor
from llama_index.core.schema import BaseNode, MetadataMode, NodeWithScore, QueryBundle

from colmax import Engine, Hit
from colmax.types import EXPLANATION_KEY

__all__ = ["ColmaxRerank"]

logger = logging.getLogger(__name__)
dispatcher = get_dispatcher(__name__)


class ColmaxRerank(BaseNodePostprocessor):
    """Rerank nodes by MaxSim with a ColBERT-style model, all candidates in one engine call
    (in batches of ``colmax.limits.MAX_RERANK_CANDIDATES``, 1,000, beyond that).

    The query and the candidates go through the checkpoint's real pipeline (projection layer,
    query/document markers, ``[MASK]`` query augmentation) in ``colmax.Engine.rerank``.
    Candidates whose node id is indexed in the engine with the same text are scored with the
    stored vectors instead of being encoded again: share the retriever's engine
    (``ColmaxRerank(engine=retriever.engine)``) to get that for free.

    The input nodes are not modified: new ``NodeWithScore`` objects carry the MaxSim score
    (raw sum over query vectors; see the colmax README). Nodes with no text cannot be scored;
    they are kept after the scored ones with ``score=None``.

    Args:
        top_n: how many nodes to return.
        model: a Hub id or local folder of a ColBERT/PyLate/HF checkpoint.
        engine: an existing ``colmax.Engine`` instead of ``model``.
        device: device for ``model`` (``"cpu"``, ``"cuda"``, ...; default: best available).
        metadata_mode: which metadata goes into the scored text (``EMBED``, as LlamaIndex
            rerankers and ``ColmaxRetriever`` do by default).
        keep_retrieval_score: copy each node and keep its previous score in
            ``metadata["retrieval_score"]``.
        explain: copy each returned node with ``metadata["colmax_explanation"]``
            (``Explanation.to_dict()``: which query token matched which span of the scored
            text, and the best passage); the key is excluded from the LLM and embedding views.
        **encoder_kwargs: passed to ``Engine.from_pretrained`` (``query_length``, ...).

    Raises:
        ValueError: not exactly one of ``model``/``engine``, model settings with ``engine``, an
            engine without an encoder, or ``top_n < 1``.

    Examples:
        >>> reranker = ColmaxRerank(top_n=3, model="answerdotai/answerai-colbert-small-v1")  # doctest: +SKIP
        >>> reranker.postprocess_nodes(nodes, query_str="what is MaxSim?")  # doctest: +SKIP
    """

    top_n: int = Field(default=5, gt=0, description="Number of nodes to return.")
    model: str = Field(default="colmax", description="Model name or folder (used in events).")
    metadata_mode: MetadataMode = Field(
        default=MetadataMode.EMBED, description="Metadata included in the scored text."
    )
    keep_retrieval_score: bool = Field(
        default=False, description="Keep the previous score in metadata['retrieval_score']."
    )
    explain: bool = Field(
        default=False,
        description="Add the token-level explanation in metadata['colmax_explanation'].",
    )
    _engine: Engine = PrivateAttr()

    def __init__(
        self,
        top_n: int = 5,
        model: str | Path | None = None,
        *,
        engine: Engine | None = None,
        device: str | None = None,
        metadata_mode: MetadataMode = MetadataMode.EMBED,
        keep_retrieval_score: bool = False,
        explain: bool = False,
        callback_manager: CallbackManager | None = None,
        **encoder_kwargs: Any,
    ) -> None:
        if (model is None) == (engine is None):
            raise ValueError("pass exactly one of model= (a checkpoint) or engine= (an Engine)")
        if engine is None:
            engine = Engine.from_pretrained(model, device=device, **encoder_kwargs)  # type: ignore[arg-type]
        elif device is not None or encoder_kwargs:
            raise ValueError("device= and encoder settings go with model=, not engine=")
        elif not isinstance(engine, Engine):
            raise TypeError(f"engine must be a colmax.Engine, got {type(engine).__name__}")
        if engine.encoder is None:
            raise ValueError("ColmaxRerank needs an engine with an encoder to encode queries")
        super().__init__(
            top_n=top_n,
            model=str(model) if model is not None else engine.encoder.name,
            metadata_mode=metadata_mode,
            keep_retrieval_score=keep_retrieval_score,
            explain=explain,
            callback_manager=callback_manager or CallbackManager(),
        )
        self._engine = engine

    @classmethod
    def class_name(cls) -> str:
        return "ColmaxRerank"

    @property
    def engine(self) -> Engine:
        """The colmax engine that encodes and scores."""
        return self._engine

    def _postprocess_nodes(
        self,
        nodes: list[NodeWithScore],
        query_bundle: QueryBundle | None = None,
    ) -> list[NodeWithScore]:
        if query_bundle is None:
            raise ValueError(
                "ColmaxRerank needs the query: call postprocess_nodes(nodes, query_str=...) "
                "or pass query_bundle=..."
            )
        dispatcher.event(
            ReRankStartEvent(
                query=query_bundle, nodes=nodes, top_n=self.top_n, model_name=self.model
            )
        )
        if not nodes:
            dispatcher.event(ReRankEndEvent(nodes=[]))
            return []
        with self.callback_manager.event(
            CBEventType.RERANKING,
            payload={
                EventPayload.NODES: nodes,
                EventPayload.MODEL_NAME: self.model,
                EventPayload.QUERY_STR: query_bundle.query_str,
                EventPayload.TOP_K: self.top_n,
            },
        ) as event:
            reranked = self._rerank(query_bundle.query_str, nodes)
            event.on_end(payload={EventPayload.NODES: reranked})
        dispatcher.event(ReRankEndEvent(nodes=reranked))
        return reranked

    def _rerank(self, query: str, nodes: list[NodeWithScore]) -> list[NodeWithScore]:
        texts = [n.node.get_content(metadata_mode=self.metadata_mode) for n in nodes]
        scorable = [i for i, text in enumerate(texts) if text.strip()]
        if len(scorable) < len(nodes):
            logger.info(
                "ColmaxRerank: %d node(s) without text ranked last", len(nodes) - len(scorable)
            )
        # Node ids let the engine reuse stored vectors (a node given twice is encoded);
        # hits come back with their input position. Only the best top_n can be returned:
        # scoring all and explaining top_n is the same.
        hits = self._engine.rerank_in_batches(
            query,
            [texts[i] for i in scorable],
            k=self.top_n,
            ids=[nodes[i].node.node_id for i in scorable],
            explain=self.explain,
        )
        order: list[tuple[int, Hit | None]] = [
            (scorable[hit.position], hit) for hit in hits if hit.position is not None
        ]
        scored = set(scorable)
        unscored: list[tuple[int, Hit | None]] = [
            (i, None) for i in range(len(nodes)) if i not in scored
        ]
        return [self._with_score(nodes[i], hit) for i, hit in (order + unscored)[: self.top_n]]

    def _with_score(self, original: NodeWithScore, hit: Hit | None) -> NodeWithScore:
        node = original.node
        if self.keep_retrieval_score:
            metadata = {**node.metadata, "retrieval_score": original.score}
            node = node.model_copy(update={"metadata": metadata})
        if hit is not None and hit.explanation is not None:
            node = _with_explanation(node, hit.explanation.to_dict())
        return NodeWithScore(node=node, score=hit.score if hit is not None else None)


def _with_explanation(node: BaseNode, explanation: dict[str, Any]) -> BaseNode:
    """A copy of ``node`` with the explanation in its metadata, hidden from LLM and embed
    views (a long JSON object has no place in a prompt)."""

    def excluded(keys: list[str]) -> list[str]:
        return keys if EXPLANATION_KEY in keys else [*keys, EXPLANATION_KEY]

    return node.model_copy(
        update={
            "metadata": {**node.metadata, EXPLANATION_KEY: explanation},
            "excluded_llm_metadata_keys": excluded(node.excluded_llm_metadata_keys),
            "excluded_embed_metadata_keys": excluded(node.excluded_embed_metadata_keys),
        }
    )
