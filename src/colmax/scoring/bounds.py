"""The float32 error bound of the MaxSim kernels.

:class:`~colmax.scoring.packed.PackedDocuments` and :func:`~colmax.scoring.maxsim.maxsim`
compute in float32 with exactly representable inputs (float16 and bfloat16 widen exactly), so
their only error is float32 rounding, bounded here a priori. Tests use this bound as their
tolerance; a kernel that ever exceeds it is wrong, not "a bit imprecise".
"""

from __future__ import annotations

import math

from colmax.errors import InvalidInputError

__all__ = ["score_error_bound"]

_UNIT_ROUNDOFF_FP32 = 2.0**-24


def _gamma(n: int) -> float:
    """Higham's gamma_n = n u / (1 - n u): the relative error bound of an n-term fp32 dot."""
    return n * _UNIT_ROUNDOFF_FP32 / (1.0 - n * _UNIT_ROUNDOFF_FP32)


def score_error_bound(
    n_query_tokens: int, dim: int, *, max_query_norm: float = 1.0, max_doc_norm: float = 1.0
) -> float:
    """Largest possible ``|computed - exact MaxSim|`` for one query and document (float32).

    "Exact" is MaxSim in real arithmetic on the stored values (float16 tokens are exact in
    float32; float64 inputs are rounded to float32 first, which the bound includes). Each dot
    product of ``dim`` terms is off by at most ``gamma(dim + 2) * |q_i| * |d_j|`` (Higham,
    "Accuracy and Stability of Numerical Algorithms", 2nd ed., eq. 3.5, for any summation order
    or FMA use); the max over document tokens adds no error; the float32 sum over
    ``t_q`` query tokens adds at most ``gamma(t_q)`` relative. With unit vectors, ``t_q = 32``
    and ``dim = 128`` this is ``3.1e-4`` per query (``7.8e-6`` per dot product); typical errors
    are around ``1e-6``.

    Args:
        n_query_tokens: ``t_q``, the query's token count (>= 1).
        dim: the vector dimension (>= 1).
        max_query_norm: the largest L2 norm of a query token (1 for normalised vectors).
        max_doc_norm: the largest L2 norm of a document token.

    Returns:
        The absolute error bound on one score.

    Raises:
        InvalidInputError: a count is < 1 or a norm is negative or not finite.

    Examples:
        >>> f"{score_error_bound(32, 128):.2e}"
        '3.09e-04'
    """
    if n_query_tokens < 1 or dim < 1:
        raise InvalidInputError(
            f"need n_query_tokens >= 1 and dim >= 1, got {n_query_tokens}, {dim}"
        )
    norms = (max_query_norm, max_doc_norm)
    if not all(math.isfinite(x) and x >= 0 for x in norms):
        raise InvalidInputError(f"norms must be finite and >= 0, got {norms}")
    g_dot = _gamma(dim + 2)
    per_token = g_dot + _gamma(n_query_tokens) * (1.0 + g_dot)
    return n_query_tokens * per_token * max_query_norm * max_doc_norm
