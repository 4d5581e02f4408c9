"""colmax: late-interaction (ColBERT / MaxSim) retrieval and reranking for RAG pipelines.

:class:`Engine` is the whole API: every door (LangChain, LlamaIndex, the CLI, the HTTP server)
is a thin translation onto it. ``StoredDocument`` is :class:`Document` under a name that does
not clash with LangChain's or LlamaIndex's ``Document``.

Examples:
    >>> from colmax import Engine
    >>> engine = Engine.from_pretrained("answerdotai/answerai-colbert-small-v1")  # doctest: +SKIP
    >>> engine.add(["text one", "text two"], ids=["a", "b"])  # doctest: +SKIP
    >>> engine.search("a question", k=1)  # doctest: +SKIP
"""

from __future__ import annotations

__version__ = "0.1.0"

from typing import TYPE_CHECKING, Any

# Before anything imports torch: its OpenMP runtime reads the wait policy once, at load.
from colmax.threads import fit_threads, prefer_passive_wait

prefer_passive_wait()

from colmax.chunking.splitter import Chunker  # noqa: E402
from colmax.engine import Engine  # noqa: E402
from colmax.errors import ColmaxError  # noqa: E402
from colmax.explain.model import Explanation  # noqa: E402
from colmax.types import Document, Hit, IndexInfo, StoredDocument  # noqa: E402

fit_threads()

if TYPE_CHECKING:
    from colmax.encoders import load_encoder

__all__ = [
    "Chunker",
    "ColmaxError",
    "Document",
    "Engine",
    "Explanation",
    "Hit",
    "IndexInfo",
    "StoredDocument",
    "__version__",
    "load_encoder",
]


def __getattr__(name: str) -> Any:
    # load_encoder pulls in transformers, which is slow to import: only when asked for.
    if name == "load_encoder":
        from colmax.encoders import load_encoder

        return load_encoder
    raise AttributeError(f"module 'colmax' has no attribute {name!r}")
