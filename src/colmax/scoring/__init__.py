"""MaxSim scoring as pure functions over arrays: no I/O, no model.

* :func:`maxsim` — padded batches ``q (n_q, t_q, dim)`` x ``d (n_d, t_d, dim)`` with masks.
* :func:`maxsim_ragged` — ragged lists of ``(t, dim)`` matrices (reranking).
* :class:`PackedDocuments` — a whole corpus packed as ``tokens`` + ``offsets``: the exact,
  fast kernel of the flat index, with subset scoring for filtered search.
* :func:`maxsim_loop` — the naive float64 reference every kernel is tested against.
* :func:`score_error_bound` — the documented float32 error bound of the kernels.

Scores are the raw sum over query tokens of each token's best match (ColBERT's MaxSim);
``normalize="mean"`` divides by the number of real query tokens where offered.

Examples:
    >>> import torch
    >>> from colmax.scoring import maxsim_ragged
    >>> maxsim_ragged([torch.eye(2)], [torch.tensor([[0.6, 0.8]])])
    tensor([[1.4000]])
"""

from __future__ import annotations

from colmax.scoring.bounds import score_error_bound
from colmax.scoring.maxsim import maxsim, maxsim_ragged
from colmax.scoring.packed import PackedDocuments
from colmax.scoring.reference import maxsim_loop

__all__ = [
    "PackedDocuments",
    "maxsim",
    "maxsim_loop",
    "maxsim_ragged",
    "score_error_bound",
]
