"""Read what other late-interaction libraries wrote: RAGatouille and colbert-ai PLAID indexes.

Examples:
    >>> from colmax.compat import import_ragatouille_index
    >>> engine = import_ragatouille_index(  # doctest: +SKIP
    ...     ".ragatouille/colbert/indexes/my_index", "my-colmax-index")
"""

from __future__ import annotations

from colmax.compat.colbert_plaid import PlaidIndex, decode_vectors, read_plaid_index
from colmax.compat.ragatouille import (
    RagatouillePassage,
    import_ragatouille_index,
    read_ragatouille_index,
)

__all__ = [
    "PlaidIndex",
    "RagatouillePassage",
    "decode_vectors",
    "import_ragatouille_index",
    "read_plaid_index",
    "read_ragatouille_index",
]
