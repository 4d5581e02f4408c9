"""colmax: late-interaction (ColBERT / MaxSim) retrieval and reranking for RAG pipelines.

Examples:
    >>> from colmax import Engine
    >>> engine = Engine.from_pretrained("answerdotai/answerai-colbert-small-v1")  # doctest: +SKIP
    >>> engine.add(["text one", "text two"], ids=["a", "b"])  # doctest: +SKIP
    >>> engine.search("a question", k=1)  # doctest: +SKIP
"""

from __future__ import annotations

__version__ = "0.1.0"

# Before anything imports torch: its OpenMP runtime reads the wait policy once, at load.
from colmax.threads import fit_threads, prefer_passive_wait

prefer_passive_wait()

from colmax.engine import Engine  # noqa: E402
from colmax.errors import ColmaxError  # noqa: E402
from colmax.types import Document, Hit  # noqa: E402

fit_threads()

__all__ = ["ColmaxError", "Document", "Engine", "Hit", "__version__"]
