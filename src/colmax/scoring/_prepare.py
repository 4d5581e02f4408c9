"""Preparing the compute copy of a packed corpus (private): input checks, row gathering.

The tokens handed to :meth:`~colmax.scoring.PackedDocuments.from_arrays` (numpy, memory map or
tensor) are checked, then copied slice by slice into the length-sorted layout of
:mod:`colmax.scoring._layout` in the copy's dtype, so memory stays bounded however large the
corpus.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt
import torch

from colmax.errors import InvalidEmbeddingError, InvalidInputError
from colmax.scoring._layout import Layout, layout_rows

__all__ = ["NORM_MARGIN", "check_offsets", "check_tokens", "fill_matrix", "max_row_norm"]

_PREP_ROWS = 1 << 18  # rows converted per step while building the compute copy
#: float32 norms are within dim * 2**-24 relative: bounds built from them are widened by this.
NORM_MARGIN = 1.0 + 2.0**-10


def check_offsets(offsets: Any, n_tokens: int) -> npt.NDArray[np.int64]:
    offs = np.asarray(offsets.cpu() if isinstance(offsets, torch.Tensor) else offsets)
    if offs.ndim != 1 or offs.size == 0 or not np.issubdtype(offs.dtype, np.integer):
        raise InvalidInputError(
            f"offsets must be a 1-D integer array of n_docs + 1 entries, got {offs.dtype} "
            f"with shape {offs.shape}"
        )
    offs = offs.astype(np.int64)
    if offs[0] != 0 or offs[-1] != n_tokens:
        raise InvalidInputError(
            f"offsets must start at 0 and end at n_tokens={n_tokens}, got {offs[0]} .. {offs[-1]}"
        )
    if offs.size > 1 and not bool((np.diff(offs) > 0).all()):
        raise InvalidInputError(
            "offsets must be strictly increasing: every document needs >= 1 token"
        )
    return offs


def check_tokens(tokens: Any) -> Any:
    if isinstance(tokens, torch.Tensor):
        ok = tokens.is_floating_point()
    else:
        tokens = tokens if isinstance(tokens, np.ndarray) else np.asarray(tokens)
        ok = np.issubdtype(tokens.dtype, np.floating)
    if not ok or tokens.ndim != 2 or tokens.shape[1] == 0:
        raise InvalidEmbeddingError(
            f"tokens must be a (n_tokens, dim) floating-point matrix, got {tokens.dtype} with "
            f"shape {tuple(tokens.shape)}"
        )
    return tokens


def _copy_rows(tokens: Any, rows: npt.NDArray[np.int64], out: torch.Tensor) -> None:
    """``out[:] = tokens[rows]`` in ``out``'s dtype, checking that every value is finite."""
    if isinstance(tokens, torch.Tensor):
        out.copy_(tokens.index_select(0, torch.from_numpy(rows).to(tokens.device)))
    else:  # numpy or a memory map: only the rows asked for are read
        out.copy_(torch.from_numpy(np.ascontiguousarray(np.take(tokens, rows, axis=0))))
    if not bool(torch.isfinite(out).all()):
        raise InvalidEmbeddingError(
            f"tokens hold NaN or infinite values (or values beyond the range of {out.dtype})"
        )


def fill_matrix(
    tokens: Any,
    offs: npt.NDArray[np.int64],
    lengths: npt.NDArray[np.int64],
    layout: Layout,
    dtype: torch.dtype,
) -> torch.Tensor:
    """Build the prepared copy in the layout's row order, a bounded slice at a time."""
    matrix = torch.empty((layout.n_rows, int(tokens.shape[1])), dtype=dtype)
    step = max(1, _PREP_ROWS // int(lengths.max(initial=1)))  # documents per slice
    for a in range(0, layout.order.size, step):
        docs = layout.order[a : a + step]
        rows = layout_rows(offs[docs], lengths[docs], layout.padded_len[a : a + step])
        r0 = int(layout.row_start[a])
        _copy_rows(tokens, rows, matrix[r0 : r0 + rows.size])
    return matrix


def max_row_norm(matrix: torch.Tensor) -> float:
    """Largest row norm, rounded up (float32 norms are within dim * 2**-24 relative)."""
    best = 0.0
    for a in range(0, matrix.shape[0], _PREP_ROWS):
        rows = matrix[a : a + _PREP_ROWS].float()
        best = max(best, float(torch.linalg.vector_norm(rows, dim=1).max()))
    return best * NORM_MARGIN
