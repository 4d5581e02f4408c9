"""LlamaIndex retriever over a colmax engine: late-interaction (ColBERT / MaxSim) search."""

from __future__ import annotations

from llama_index.retrievers.colmax.base import ColmaxRetriever
from llama_index.retrievers.colmax.filters import to_colmax_filter

__all__ = ["ColmaxRetriever", "to_colmax_filter"]
