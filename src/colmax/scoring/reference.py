"""The obviously-correct MaxSim: a loop over (query, document) pairs in float64.

Every fast kernel in :mod:`colmax.scoring` is tested against :func:`maxsim_loop`. It is written
for clarity, not speed: one small float64 matrix product per pair, no padding, no masks.

MaxSim (Khattab & Zaharia, "ColBERT", SIGIR 2020, eq. 3): for a query ``q`` with token vectors
``q_1 .. q_m`` and a document ``d`` with token vectors ``d_1 .. d_n``,
``score(q, d) = sum_i max_j <q_i, d_j>``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from colmax.errors import DimensionMismatchError, InvalidEmbeddingError

__all__ = ["maxsim_loop"]


def _as_float64_matrix(x: Any, what: str) -> npt.NDArray[np.float64]:
    """Convert one token matrix (torch tensor or array-like) to a float64 numpy array."""
    if hasattr(x, "detach"):  # a torch tensor; bfloat16 has no numpy dtype, so widen first.
        x = x.detach().cpu().double().numpy()
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] == 0:
        raise InvalidEmbeddingError(
            f"{what} must be a (n_tokens, dim) matrix with n_tokens >= 1, got shape {arr.shape}"
        )
    return arr


def maxsim_loop(queries: Sequence[Any], docs: Sequence[Any]) -> npt.NDArray[np.float64]:
    """Score every query against every document with a plain loop, in float64.

    Args:
        queries: ``n_q`` token matrices, each ``(t_q, dim)`` (torch tensors or numpy arrays;
            ``t_q`` may differ between queries).
        docs: ``n_d`` token matrices, each ``(t_d, dim)``.

    Returns:
        ``(n_q, n_d)`` float64 array: ``out[a, b] = sum_i max_j <queries[a][i], docs[b][j]>``.

    Raises:
        InvalidEmbeddingError: a matrix is not 2-D or has no tokens.
        DimensionMismatchError: the matrices do not all share one ``dim``.

    Examples:
        >>> import numpy as np
        >>> q = [np.array([[1.0, 0.0], [0.0, 1.0]])]
        >>> d = [np.array([[1.0, 0.0]]), np.array([[0.6, 0.8], [-1.0, 0.0]])]
        >>> maxsim_loop(q, d)  # doc 0: 1 + 0; doc 1: 0.6 + 0.8
        array([[1. , 1.4]])
    """
    qs = [_as_float64_matrix(q, f"queries[{i}]") for i, q in enumerate(queries)]
    ds = [_as_float64_matrix(d, f"docs[{j}]") for j, d in enumerate(docs)]
    dims = {m.shape[1] for m in qs + ds}
    if len(dims) > 1:
        raise DimensionMismatchError(
            f"all query and document vectors must share one dim, got dims {sorted(dims)}"
        )
    out = np.zeros((len(qs), len(ds)), dtype=np.float64)
    for a, q in enumerate(qs):
        for b, d in enumerate(ds):
            sims = q @ d.T  # (t_q, t_d): every query token against every document token
            out[a, b] = sims.max(axis=1).sum()
    return out
