"""Encoding from several threads at once gives exactly what encoding alone gives.

A Hugging Face fast tokenizer keeps its truncation and padding settings as state of the one
Rust tokenizer object, set before each call: two threads tokenizing with different lengths
(queries cut at 32, documents at 180) can each run with the other's settings. On colmax e83c1de
4 query threads + 4 document threads gave queries of 180 vectors and documents of 32, and a
server stored a document cut to 32 vectors for good. Here every output of every thread must
have exactly the length it has when encoded alone, and the vectors must be the same too.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from colmax.chunking import Chunker
from colmax.encoders import load_encoder

QUERY_LENGTH = 32
DOCUMENT_LENGTH = 180
_WORDS = [
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
#: 400 words, no punctuation: every document keeps exactly DOCUMENT_LENGTH vectors.
LONG_DOC = " ".join(_WORDS[i % len(_WORDS)] for i in range(400))
#: Short queries padded with [MASK] to QUERY_LENGTH, and one long one cut to it.
QUERIES = ["what is late interaction", "capital of france", " ".join(_WORDS * 6)]
SECONDS = 4.0  # per test; on e83c1de the first wrong length appeared well within a second


@pytest.fixture(scope="module")
def encoder(tiny_model_dir: Path) -> Any:
    return load_encoder(
        str(tiny_model_dir),
        query_length=QUERY_LENGTH,
        document_length=DOCUMENT_LENGTH,
        do_query_expansion=True,
    )


def _hammer(workers: list[Callable[[], str | None]], seconds: float = SECONDS) -> list[str]:
    """Run every worker in its own thread, repeatedly, until ``seconds`` pass or one of them
    reports a problem; returns the problems (and any exception) seen."""
    problems: list[str] = []
    stop = threading.Event()
    start = threading.Barrier(len(workers))

    def loop(work: Callable[[], str | None]) -> None:
        start.wait()
        try:
            while not stop.is_set():
                problem = work()
                if problem is not None:
                    problems.append(problem)
                    stop.set()
        except Exception as exc:
            problems.append(f"{type(exc).__name__}: {exc}")
            stop.set()

    threads = [threading.Thread(target=loop, args=(w,)) for w in workers]
    for t in threads:
        t.start()
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and not stop.is_set():
        time.sleep(0.05)
    stop.set()
    for t in threads:
        t.join(timeout=60)
    return problems


def test_queries_and_documents_from_many_threads_keep_their_lengths(encoder: Any) -> None:
    want_q = [v.clone() for v in encoder.encode_queries(QUERIES)]
    want_d = encoder.encode_documents([LONG_DOC, LONG_DOC])
    assert {v.shape[0] for v in want_q} == {QUERY_LENGTH}
    assert {v.shape[0] for v in want_d} == {DOCUMENT_LENGTH}

    def queries() -> str | None:
        got = encoder.encode_queries(QUERIES)
        for g, w in zip(got, want_q):
            if g.shape != w.shape or not torch.allclose(g, w, atol=1e-5):
                return f"a query came back with shape {tuple(g.shape)}, alone {tuple(w.shape)}"
        return None

    def documents() -> str | None:
        got = encoder.encode_documents([LONG_DOC, LONG_DOC])
        for g, w in zip(got, want_d):
            if g.shape != w.shape or not torch.allclose(g, w, atol=1e-5):
                return f"a document came back with shape {tuple(g.shape)}, alone {tuple(w.shape)}"
        return None

    problems = _hammer([queries] * 4 + [documents] * 4)
    assert not problems, problems[:3]


def test_chunking_and_token_spans_alongside_encoding(encoder: Any) -> None:
    """Other users of the same tokenizer (the chunker counts tokens without truncation,
    ``token_spans`` asks for offsets) must not change what encoding gives either."""
    chunker = Chunker(max_tokens=50, tokenizer=encoder.tokenizer)
    want_chunks = chunker.spans(LONG_DOC)
    want_spans = encoder.token_spans([LONG_DOC])

    def documents() -> str | None:
        n = encoder.encode_documents([LONG_DOC])[0].shape[0]
        return None if n == DOCUMENT_LENGTH else f"a document kept {n} vectors"

    def chunks() -> str | None:
        got = chunker.spans(LONG_DOC)
        return None if got == want_chunks else f"{len(got)} chunks instead of {len(want_chunks)}"

    def spans() -> str | None:
        got = encoder.token_spans([LONG_DOC])
        return None if got == want_spans else f"{len(got[0])} spans instead of {len(want_spans[0])}"

    def queries() -> str | None:
        n = encoder.encode_queries(QUERIES[:1])[0].shape[0]
        return None if n == QUERY_LENGTH else f"a query came back with {n} vectors"

    problems = _hammer([documents] * 2 + [chunks] * 2 + [spans, queries])
    assert not problems, problems[:3]


@pytest.mark.parametrize("family", ["colpali", "colqwen2"])
def test_vision_queries_and_pages_from_many_threads(family: str, tmp_path: Path) -> None:
    """The vision encoders share their processor's tokenizer between queries and pages, and
    with a chunker: the same rule holds."""
    pytest.importorskip("PIL", reason='pip install "colmax[vision]"')
    import numpy as np
    from PIL import Image

    from colmax.vision import tiny

    make = tiny.make_tiny_colpali if family == "colpali" else tiny.make_tiny_colqwen2
    vision = load_encoder(str(make(tmp_path / family)))
    long_query = " ".join(tiny.TINY_WORDS[i % 20] for i in range(300))
    queries = ["revenue growth", long_query]
    rng = np.random.default_rng(0)
    pages = [Image.fromarray(rng.integers(0, 255, (64, 48, 3), dtype=np.uint8))]
    want_q = [v.clone() for v in vision.encode_queries(queries)]
    want_p = vision.encode_images(pages)
    chunker = Chunker(max_tokens=50, tokenizer=vision.tokenizer)
    want_chunks = chunker.spans(long_query)

    def encode_queries() -> str | None:
        got = vision.encode_queries(queries)
        bad = [tuple(g.shape) for g, w in zip(got, want_q) if g.shape != w.shape]
        return f"queries came back with shapes {bad}" if bad else None

    def encode_pages() -> str | None:
        got = vision.encode_images(pages)[0]
        return None if got.shape == want_p[0].shape else f"a page gave {tuple(got.shape)}"

    def chunks() -> str | None:
        return None if chunker.spans(long_query) == want_chunks else "chunks changed"

    problems = _hammer([encode_queries] * 3 + [encode_pages] * 2 + [chunks], seconds=3.0)
    assert not problems, problems[:3]
