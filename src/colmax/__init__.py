"""colmax: late-interaction (ColBERT / MaxSim) retrieval and reranking for RAG pipelines.

Examples:
    >>> from colmax import Engine
    >>> engine = Engine.from_pretrained("answerdotai/answerai-colbert-small-v1")  # doctest: +SKIP
    >>> engine.add(["text one", "text two"], ids=["a", "b"])  # doctest: +SKIP
    >>> engine.search("a question", k=1)  # doctest: +SKIP
"""

from __future__ import annotations

__version__ = "0.1.0"

from colmax.engine import Engine
from colmax.errors import ColmaxError
from colmax.types import Document, Hit

__all__ = ["ColmaxError", "Document", "Engine", "Hit", "__version__"]
