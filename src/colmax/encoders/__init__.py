"""Token encoders: ColBERT checkpoints (colbert-ai, PyLate, sentence-transformers 6) and plain
Hugging Face models.

Examples:
    >>> from colmax.encoders import load_encoder
    >>> encoder = load_encoder("lightonai/GTE-ModernColBERT-v1")  # doctest: +SKIP
    >>> queries = encoder.encode_queries(["what is MaxSim?"])  # doctest: +SKIP
"""

from __future__ import annotations

from colmax.encoders.base import Encoder
from colmax.encoders.colbert import PROGRESS_THRESHOLD, ColBERTEncoder
from colmax.encoders.detect import detect_format
from colmax.encoders.loader import load_encoder
from colmax.encoders.settings import FORMATS, EncoderSettings

__all__ = [
    "FORMATS",
    "PROGRESS_THRESHOLD",
    "ColBERTEncoder",
    "Encoder",
    "EncoderSettings",
    "detect_format",
    "load_encoder",
]
