"""Compressed late-interaction index (``index="plaid"``): k-means centroids, 2/4-bit
residuals, inverted lists and the four-stage PLAID search, in plain torch/numpy.

See ``docs/plaid.md`` for how it works and when to choose it.
"""

from __future__ import annotations

from colmax.indexes.plaid.build import build_progress
from colmax.indexes.plaid.codec import CODEC_DIR, CodecStats, ResidualCodec
from colmax.indexes.plaid.index import PlaidIndex
from colmax.indexes.plaid.search import SearchParams
from colmax.indexes.plaid.segment import CodedSegment, is_coded_name
from colmax.indexes.plaid.settings import PlaidSettings
from colmax.indexes.plaid.stream import ArraySource, ListSource, NpyFileSource, TokenSource

__all__ = [
    "CODEC_DIR",
    "ArraySource",
    "CodecStats",
    "CodedSegment",
    "ListSource",
    "NpyFileSource",
    "PlaidIndex",
    "PlaidSettings",
    "ResidualCodec",
    "SearchParams",
    "TokenSource",
    "build_progress",
    "is_coded_name",
]
