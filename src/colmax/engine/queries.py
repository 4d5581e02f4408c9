"""Queries and documents turned into vectors: validation, then the encoder (or the vectors given)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from colmax.encoders.base import Encoder
from colmax.errors import InvalidInputError, NoEncoderError
from colmax.validation import as_list, check_texts, to_vectors

__all__ = ["Queries", "encode_documents", "encode_queries"]


@dataclass(frozen=True)
class Queries:
    """Encoded queries: ``single`` (one query given, not a list), the texts (``None`` for
    queries given as vectors) and one ``(n_q, dim)`` float32 tensor each."""

    single: bool
    texts: list[str | None]
    vectors: list[torch.Tensor]


def encode_queries(
    encoder: Encoder | None,
    dim: int,
    query: Any,
    query_embeddings: Any,
    batch_size: int | None,
) -> Queries:
    """Validate and encode one query or a list, given as text or as vectors.

    Raises:
        InvalidInputError: both or neither of ``query`` / ``query_embeddings``, an empty
            query or list, malformed vectors.
        NoEncoderError: a text query and no encoder.
    """
    if (query is None) == (query_embeddings is None):
        raise InvalidInputError(
            "pass exactly one of a query text (or list) and query_embeddings=..."
        )
    if query_embeddings is not None:
        embs = query_embeddings
        single = isinstance(embs, (np.ndarray, torch.Tensor)) and embs.ndim == 2
        vecs = to_vectors(
            [embs] if single else as_list(embs, "query_embeddings"), dim, "query_embeddings"
        )
        return Queries(single, [None] * len(vecs), [torch.from_numpy(v) for v in vecs])
    single = isinstance(query, str)
    texts = check_texts(
        [query] if single else as_list(query, "query"), "queries", "a query needs some text"
    )
    if not texts:
        raise InvalidInputError("search() got an empty list of queries")
    if encoder is None:
        raise NoEncoderError("this engine has no encoder: pass query_embeddings=...")
    vectors = list(encoder.encode_queries(texts, batch_size=batch_size))
    return Queries(single, list(texts), vectors)


def encode_documents(
    encoder: Encoder | None,
    texts: Sequence[str],
    batch_size: int | None,
    show_progress: bool | None,
) -> list[np.ndarray]:
    """Document vectors as float32 arrays.

    Raises:
        NoEncoderError: no encoder.
        InvalidInputError: the encoder's skiplist masks every token of a document.
    """
    if encoder is None:
        raise NoEncoderError(
            "this engine has no encoder: pass precomputed embeddings instead of text"
        )
    out = encoder.encode_documents(list(texts), batch_size=batch_size, show_progress=show_progress)
    for i, vectors in enumerate(out):
        if vectors.shape[0] == 0:  # a skiplist that masks every token, [CLS]/[SEP] included
            raise InvalidInputError(
                f"documents[{i}] has no vectors left after the encoder's skiplist "
                f"({texts[i]!r:.60}): every token is masked; check the model's skiplist"
            )
    return [t.numpy() for t in out]
