"""Input checks shared by the scoring kernels (private).

Every check raises a :mod:`colmax.errors` exception that names the argument and what was wrong;
none uses ``assert``, which ``python -O`` strips.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from colmax.errors import DimensionMismatchError, InvalidEmbeddingError, InvalidInputError

__all__ = [
    "as_float_tensor",
    "check_finite",
    "check_token_matrices",
    "compute_dtype",
]


def as_float_tensor(x: Any, what: str) -> torch.Tensor:
    """Return ``x`` as a floating-point tensor without copying when it already is one.

    Args:
        x: a torch tensor or an array-like of floats (numpy float16 included).
        what: the argument's name, for the error message.

    Returns:
        The same data as a tensor (shared memory where torch allows it).

    Raises:
        InvalidEmbeddingError: ``x`` is not an array of floating-point numbers.
    """
    if not isinstance(x, torch.Tensor):
        try:
            x = torch.as_tensor(np.asarray(x))
        except (TypeError, ValueError, RuntimeError) as exc:
            raise InvalidEmbeddingError(f"{what} is not a numeric array: {exc}") from exc
    if not x.is_floating_point():
        raise InvalidEmbeddingError(f"{what} must hold floating-point vectors, got dtype {x.dtype}")
    return x


def compute_dtype(*tensors: torch.Tensor) -> torch.dtype:
    """float64 when any input is float64, else float32 (half inputs are widened, never used)."""
    if any(t.dtype == torch.float64 for t in tensors):
        return torch.float64
    return torch.float32


def check_finite(x: torch.Tensor, what: str, mask: torch.Tensor | None = None) -> None:
    """Raise when a real (unmasked) entry of ``x`` is NaN or infinite.

    Args:
        x: ``(..., dim)`` vectors.
        what: the argument's name, for the error message.
        mask: optional bool mask of shape ``x.shape[:-1]``; False rows are padding and ignored.

    Raises:
        InvalidEmbeddingError: a real vector holds NaN or an infinity.
    """
    ok = torch.isfinite(x).all(dim=-1)
    if mask is not None:
        ok = ok | ~mask
    if not bool(ok.all()):
        raise InvalidEmbeddingError(f"{what} holds NaN or infinite values")


def check_token_matrices(xs: Sequence[Any], what: str) -> tuple[list[torch.Tensor], int | None]:
    """Validate a list of ``(n_tokens, dim)`` matrices that must share one ``dim``.

    Args:
        xs: the matrices (torch tensors or array-likes).
        what: the argument's name, for the error message.

    Returns:
        ``(tensors, dim)``; ``dim`` is None when ``xs`` is empty.

    Raises:
        InvalidInputError: ``xs`` is a bare tensor or string instead of a sequence.
        InvalidEmbeddingError: a matrix is not 2-D, has no tokens, or holds NaN or infinities.
        DimensionMismatchError: the matrices do not share one ``dim``.
    """
    if isinstance(xs, (str, bytes)) or (isinstance(xs, torch.Tensor) and xs.ndim < 3):
        raise InvalidInputError(f"{what} must be a sequence of (n_tokens, dim) matrices")
    out: list[torch.Tensor] = []
    dim: int | None = None
    for i, x in enumerate(xs):
        t = as_float_tensor(x, f"{what}[{i}]")
        if t.ndim != 2 or t.shape[0] == 0:
            raise InvalidEmbeddingError(
                f"{what}[{i}] must be a (n_tokens, dim) matrix with n_tokens >= 1, "
                f"got shape {tuple(t.shape)}"
            )
        if dim is None:
            dim = int(t.shape[1])
        elif t.shape[1] != dim:
            raise DimensionMismatchError(
                f"{what}[{i}] has dim {t.shape[1]}, but {what}[0] has dim {dim}"
            )
        out.append(t)
    # One finiteness pass over everything: per-matrix checks cost a torch dispatch each, which
    # dominates reranking a hundred short candidates. Name the culprit only on failure.
    if out and not bool(torch.isfinite(torch.cat([t.reshape(-1) for t in out])).all()):
        for i, t in enumerate(out):
            check_finite(t, f"{what}[{i}]")
    return out, dim
