"""LlamaIndex node postprocessor that reranks with a colmax engine (ColBERT / MaxSim)."""

from __future__ import annotations

from llama_index.postprocessor.colmax_rerank.base import ColmaxRerank

__all__ = ["ColmaxRerank"]
