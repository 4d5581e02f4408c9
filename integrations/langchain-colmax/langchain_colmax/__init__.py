"""LangChain integration for colmax: late-interaction (ColBERT / MaxSim) retrieval.

- :class:`ColmaxRetriever`: a ``BaseRetriever`` over a colmax index.
- :class:`ColmaxRerank`: a ``BaseDocumentCompressor`` that reranks candidates from any
  retriever (use it in ``ContextualCompressionRetriever`` or an LCEL chain).
- :class:`ColmaxVectorStore`: the ``VectorStore`` interface (add, delete, get, search).
- :class:`ColmaxTranslator`: LangChain structured-query filters to colmax filter dicts.

All of them are thin doors onto one :class:`colmax.Engine`.
"""

from __future__ import annotations

__version__ = "0.1.0"

from langchain_colmax.filters import ColmaxTranslator
from langchain_colmax.rerank import ColmaxRerank
from langchain_colmax.retrievers import ColmaxRetriever
from langchain_colmax.vectorstores import ColmaxVectorStore

__all__ = [
    "ColmaxRerank",
    "ColmaxRetriever",
    "ColmaxTranslator",
    "ColmaxVectorStore",
    "__version__",
]
