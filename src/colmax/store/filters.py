"""Deprecated home of the filter language: use :mod:`colmax.filters` (removed in 0.3)."""

from __future__ import annotations

import warnings

from colmax.filters import MAX_PARAMETERS, OPERATORS, compile_filter, count_conditions

__all__ = ["MAX_PARAMETERS", "OPERATORS", "compile_filter", "count_conditions"]

warnings.warn(
    "colmax.store.filters moved to colmax.filters; import it from there",
    DeprecationWarning,
    stacklevel=2,
)
