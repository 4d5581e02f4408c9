"""A very long text costs what the model reads of it, not its length.

The encoder keeps ``document_length`` tokens (``query_length`` for queries); on colmax e83c1de
a 9 MB document was still tokenized whole (8.8 s and 1.4 GB) to keep 180 tokens, silently. Now
a text is cut at ``length * colmax.limits.MAX_CHARS_PER_TOKEN`` characters before tokenizing,
the vectors are those of the whole text, and the cut is logged.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from colmax import limits
from colmax.encoders import load_encoder

WORDS = [
    "search",
    "engine",
    "query",
    "document",
    "paris",
    "france",
    "capital",
    "late",
    "interaction",
    "model",
]


@pytest.fixture(scope="module")
def encoder(tiny_model_dir: Path) -> Any:
    return load_encoder(str(tiny_model_dir), document_length=64, query_length=16)


def _text(n_chars: int) -> str:
    words = " ".join(WORDS)
    return (words + " ") * (n_chars // (len(words) + 1) + 1)


def test_a_huge_document_is_cut_before_tokenizing(encoder: Any, caplog: Any) -> None:
    huge = _text(9 * 2**20)
    reference = encoder.encode_documents([huge[:20_000]])[0]  # far more than 64 tokens
    with caplog.at_level(logging.WARNING):
        start = time.perf_counter()
        got = encoder.encode_documents([huge])[0]
        took = time.perf_counter() - start
    assert got.shape == reference.shape and torch.allclose(got, reference, atol=1e-6)
    assert "cut" in caplog.text and str(64 * limits.MAX_CHARS_PER_TOKEN) in caplog.text
    assert took < 2.0, f"{took:.2f} s for a 9 MB document"


def test_short_texts_are_not_cut_or_logged(encoder: Any, caplog: Any) -> None:
    text = _text(64 * limits.MAX_CHARS_PER_TOKEN - 50)
    with caplog.at_level(logging.WARNING):
        encoder.encode_documents([text])
        encoder.encode_queries([text[: 16 * limits.MAX_CHARS_PER_TOKEN]])
    assert "cut" not in caplog.text


def test_spans_still_index_the_text_as_given(encoder: Any) -> None:
    huge = "  " + _text(200_000)
    spans = encoder.token_spans([huge])[0]
    real = [s for s in spans if s is not None]
    assert real and all(huge[a:b].strip() for a, b in real)
    assert real[0][0] == 2  # leading whitespace counted


def test_the_callers_deadline_stops_encoding_between_batches(encoder: Any) -> None:
    import threading

    from colmax.deadline import deadline
    from colmax.errors import DeadlineExceededError

    cancelled = threading.Event()
    cancelled.set()
    with deadline(60, cancelled), pytest.raises(DeadlineExceededError, match="cancelled"):
        encoder.encode_documents(["search engine"] * 10, batch_size=2)
    assert len(encoder.encode_documents(["search engine"] * 10, batch_size=2)) == 10
