"""The token-encoder protocol the engine relies on."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol, runtime_checkable

import torch

__all__ = ["Encoder"]


@runtime_checkable
class Encoder(Protocol):
    """Turns texts into one L2-normalised vector per kept token.

    Implementations return float32 CPU tensors of shape ``(n_tokens, dim)``, one per input
    text, in input order.
    """

    @property
    def name(self) -> str:
        """Model name or path the encoder was loaded from."""
        ...

    @property
    def dim(self) -> int:
        """Dimension of every output vector."""
        ...

    def encode_queries(
        self,
        texts: Sequence[str],
        *,
        batch_size: int | None = None,
        show_progress: bool | None = None,
    ) -> list[torch.Tensor]:
        """Encode queries (query marker, ``[MASK]`` expansion where the model uses them)."""
        ...

    def encode_documents(
        self,
        texts: Sequence[str],
        *,
        batch_size: int | None = None,
        show_progress: bool | None = None,
    ) -> list[torch.Tensor]:
        """Encode documents (document marker, skiplist and padding removed)."""
        ...

    def config(self) -> dict[str, Any]:
        """JSON-serialisable settings that rebuild this encoder with ``load_encoder(**config)``."""
        ...
