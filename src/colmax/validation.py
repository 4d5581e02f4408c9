"""Checks on user input, done before anything is changed.

Each function raises a :class:`~colmax.errors.ColmaxError` subclass whose message names the
offending position and says what to do. Nothing here mutates state, so a failed call leaves
the index exactly as it was.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch

from colmax.errors import (
    DimensionMismatchError,
    DuplicateIdError,
    EmptyTextError,
    InvalidEmbeddingError,
    InvalidInputError,
)
from colmax.limits import MAX_ID_LENGTH

__all__ = [
    "MAX_ID_LENGTH",
    "MAX_METADATA_DEPTH",
    "AddBatch",
    "as_list",
    "check_add",
    "check_encodable",
    "check_flag",
    "check_ids",
    "check_metadatas",
    "check_missing",
    "check_pool_factor",
    "check_positive_int",
    "check_texts",
    "metadata_json",
    "to_vectors",
]

logger = logging.getLogger(__name__)

#: Levels of nested dicts/lists allowed in metadata (``{"a": [1]}`` has 2). SQLite's JSON
#: functions refuse documents nested ~1000 deep, and Python's encoder recurses: a bound keeps
#: one document from breaking every filtered search.
MAX_METADATA_DEPTH = 32


def check_encodable(text: str, what: str) -> str:
    """``text`` unchanged, or :class:`InvalidInputError` if UTF-8 cannot encode it.

    Lone surrogates (``"\ud800"``) are valid Python ``str`` but cannot be stored in SQLite or
    passed to a tokenizer; refusing them here keeps the failure before any write.
    """
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInputError(
            f"{what} is not valid Unicode text (a lone surrogate at position {exc.start}): "
            f"{text[max(0, exc.start - 10) : exc.start + 10]!r}"
        ) from None
    return text


def as_list(value: Any, what: str) -> list[Any]:
    """A sequence as a list; a bare string is refused (it would split into characters)."""
    if isinstance(value, (str, bytes)):
        raise InvalidInputError(
            f"{what} must be a list of strings, got a single {type(value).__name__}: "
            "wrap it in a list"
        )
    if not isinstance(value, Sequence):
        raise InvalidInputError(f"{what} must be a list, got {type(value).__name__}")
    return list(value)


#: What to do about an empty document given to ``Engine.add``.
SKIP_EMPTY_HINT = "remove it (Engine.add(..., skip_empty=True) skips such documents)"


def check_texts(
    texts: Sequence[Any], what: str = "documents", hint: str = "remove it"
) -> list[str]:
    """Every text must be a non-empty, non-whitespace str; ``hint`` ends the message about an
    empty one (what the caller can do about it)."""
    out = []
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise InvalidInputError(
                f"{what}[{i}] must be a string, got {type(text).__name__}: {text!r:.80}"
            )
        check_encodable(text, f"{what}[{i}]")
        if not text.strip():
            raise EmptyTextError(f"{what}[{i}] is empty or whitespace only: {hint}")
        out.append(text)
    return out


def check_ids(ids: Sequence[Any], n: int) -> list[str]:
    """Ids: ``n`` distinct non-empty strings without NUL, at most ``MAX_ID_LENGTH`` chars."""
    if len(ids) != n:
        raise InvalidInputError(f"got {len(ids)} ids for {n} documents; pass one id per document")
    seen: set[str] = set()
    for i, id_ in enumerate(ids):
        if not isinstance(id_, str):
            raise InvalidInputError(
                f"ids[{i}] must be a str, got {type(id_).__name__}: {id_!r:.80}"
            )
        if not id_ or len(id_) > MAX_ID_LENGTH or "\x00" in id_:
            raise InvalidInputError(
                f"ids[{i}] must be 1 to {MAX_ID_LENGTH} characters without NUL, got {id_!r:.80}"
            )
        check_encodable(id_, f"ids[{i}]")
        if id_ in seen:
            raise DuplicateIdError(
                f"id {id_!r} appears more than once in this call; ids must be unique"
            )
        seen.add(id_)
    return list(ids)


def check_metadatas(metadatas: Sequence[Any] | None, n: int) -> list[dict[str, Any]]:
    """One JSON-compatible dict with string keys per document (``None`` -> empty dicts)."""
    if metadatas is None:
        return [{} for _ in range(n)]
    metadatas = as_list(metadatas, "metadatas")
    if len(metadatas) != n:
        raise InvalidInputError(f"got {len(metadatas)} metadatas for {n} documents")
    out = []
    for i, meta in enumerate(metadatas):
        if meta is None:
            meta = {}
        if not isinstance(meta, Mapping) or not all(isinstance(k, str) for k in meta):
            raise InvalidInputError(
                f"metadatas[{i}] must be a dict with str keys, got {meta!r:.80}"
            )
        metadata_json(meta, i)
        out.append(dict(meta))
    return out


def metadata_json(meta: Mapping[str, Any], i: int = 0) -> str:
    """Serialise metadata strictly: JSON types only, finite numbers only, valid Unicode, at
    most :data:`MAX_METADATA_DEPTH` levels of nesting."""
    depth, has_nul, key = _walk(meta)
    if key is not _STR_KEYS:  # json.dumps would turn 1 into "1" (and {1: a, "1": b} into one key)
        raise InvalidInputError(
            f"metadatas[{i}] has a nested key that is not a str: {key!r:.40} "
            f"({type(key).__name__}); JSON keys are strings"
        )
    if depth > MAX_METADATA_DEPTH:
        raise InvalidInputError(
            f"metadatas[{i}] is nested more than {MAX_METADATA_DEPTH} levels deep; flatten it"
        )
    if has_nul:  # SQLite's JSON functions cut strings at NUL: filters would match wrongly
        raise InvalidInputError(f"metadatas[{i}] has a key or string containing NUL (\\x00)")
    try:
        text = json.dumps(meta, allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(
            f"metadatas[{i}] is not JSON-compatible ({exc}); use str, int, float, bool, None, "
            "lists and dicts with finite numbers"
        ) from exc
    return check_encodable(text, f"metadatas[{i}]")


_STR_KEYS = object()  # _walk's answer when every key is a str (None is a possible bad key)


def _walk(value: Any) -> tuple[int, bool, Any]:
    """``(levels of nested containers, whether a key or string holds NUL, the first key that
    is not a str, else _STR_KEYS)``, computed without recursion; stops descending past the
    depth limit."""
    depth, level, nul, bad_key = 0, [value], False, _STR_KEYS
    while level and depth <= MAX_METADATA_DEPTH:
        nul = nul or any(isinstance(x, str) and "\x00" in x for x in level)
        level = [x for x in level if isinstance(x, (Mapping, list, tuple))]
        depth += bool(level)
        nxt: list[Any] = []
        for x in level:
            if isinstance(x, Mapping):
                if bad_key is _STR_KEYS:
                    bad_key = next((k for k in x if not isinstance(k, str)), _STR_KEYS)
                nxt.extend(x.keys())
                nxt.extend(x.values())
            else:
                nxt.extend(x)
        level = nxt
    return depth, nul, bad_key


def check_positive_int(value: Any, name: str = "k") -> int:
    """``value`` as an int if it is a positive integer (Python or numpy; a bool is not one).

    Examples:
        >>> check_positive_int(np.int64(3), "batch_size")
        3
        >>> check_positive_int(2.0, "batch_size")
        Traceback (most recent call last):
        ...
        colmax.errors.InvalidInputError: batch_size must be a positive integer, got 2.0
    """
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
        raise InvalidInputError(f"{name} must be a positive integer, got {value!r}")
    return int(value)


def check_flag(value: Any, name: str) -> bool:
    """``value`` if it is a bool (``explain="yes"`` is a mistake, not a truthy flag)."""
    if not isinstance(value, bool):
        raise InvalidInputError(f"{name} must be True or False, got {value!r}")
    return value


def check_missing(value: Any) -> Literal["raise", "skip"]:
    """``missing=``: ``"raise"`` or ``"skip"``."""
    if value not in ("raise", "skip"):
        raise InvalidInputError(f"missing must be 'raise' or 'skip', got {value!r}")
    return value  # type: ignore[no-any-return]


def check_pool_factor(pool_factor: Any) -> int:
    """A positive int; above 1, scipy (the ``pooling`` extra) must be importable, so a
    missing dependency fails before any encoding work."""
    factor = check_positive_int(pool_factor, "pool_factor")
    if factor > 1:
        try:
            import scipy.cluster.hierarchy  # noqa: F401
        except ImportError as exc:
            raise InvalidInputError(
                f'pool_factor={factor} needs scipy: pip install "colmax[pooling]" ({exc})'
            ) from exc
    return factor


def to_vectors(
    embeddings: Sequence[Any], dim: int | None, what: str = "embeddings"
) -> list[np.ndarray]:
    """Validate precomputed multi-vectors and return L2-normalised float32 arrays.

    Each item is a numpy array or torch tensor of shape ``(n_tokens, dim)`` with ``n_tokens >= 1``,
    finite values and no row that is exactly zero (a zero vector has no direction, so no
    cosine). Any other row is kept whatever its scale: it is divided by its largest absolute
    value and normalised in float64, so subnormal rows (``1e-45``) and rows near the top of
    their dtype's range come out with norm 1 instead of being refused or skewed (a float32
    norm of ``1e-22`` values underflows).

    Examples:
        >>> [round(float(x), 4) for x in to_vectors([np.full((1, 2), 1e-45, np.float32)], 2)[0][0]]
        [0.7071, 0.7071]
    """
    out = []
    for i, emb in enumerate(embeddings):
        arr = _as_array(emb, f"{what}[{i}]")
        if arr.ndim != 2 or arr.shape[0] == 0:
            raise InvalidEmbeddingError(
                f"{what}[{i}] must have shape (n_tokens >= 1, dim), got {tuple(arr.shape)}"
            )
        if dim is not None and arr.shape[1] != dim:
            raise DimensionMismatchError(
                f"{what}[{i}] has dimension {arr.shape[1]}, but this index uses {dim}"
            )
        if not np.isfinite(arr).all():
            raise InvalidEmbeddingError(f"{what}[{i}] contains NaN or infinite values")
        out.append(_unit_rows(arr, f"{what}[{i}]"))
    return out


def _unit_rows(arr: np.ndarray, what: str) -> np.ndarray:
    """Rows of a finite float64 ``arr`` scaled to norm 1, as float32.

    Scaling by the largest absolute value first brings every row into ``[1, sqrt(dim)]`` norm,
    where squaring neither underflows nor overflows.
    """
    scale = np.abs(arr).max(axis=1, keepdims=True)
    zero = np.flatnonzero(scale[:, 0] == 0)
    if len(zero):
        raise InvalidEmbeddingError(
            f"{what} has an all-zero token vector (row {int(zero[0])}): a zero vector has no "
            "direction; drop that row"
        )
    unit = arr / scale
    unit /= np.linalg.norm(unit, axis=1, keepdims=True)
    return unit.astype(np.float32)


def _as_array(emb: Any, what: str) -> np.ndarray:
    if isinstance(emb, torch.Tensor):
        if emb.is_complex() or emb.dtype == torch.bool:
            raise InvalidEmbeddingError(f"{what} must hold real numbers, got dtype {emb.dtype}")
        try:
            # float64 holds every value of every real torch dtype exactly (float32 would
            # flush float64 subnormals to zero and overflow large ones).
            emb = emb.detach().to("cpu", torch.float64).numpy()
        except (RuntimeError, NotImplementedError) as exc:  # e.g. a tensor on the meta device
            raise InvalidEmbeddingError(f"{what} cannot be read as numbers: {exc}") from exc
    if not isinstance(emb, np.ndarray):
        raise InvalidEmbeddingError(
            f"{what} must be a numpy array or torch tensor, got {type(emb).__name__}"
        )
    if emb.dtype.kind not in "fiu":
        raise InvalidEmbeddingError(f"{what} must hold numbers, got dtype {emb.dtype}")
    return emb.astype(np.float64, copy=False)


@dataclass
class AddBatch:
    """Validated arguments of ``Engine.add``; ``vectors`` is ``None`` when text must be encoded."""

    texts: list[str]
    ids: list[str]
    metadatas: list[dict[str, Any]]
    vectors: list[np.ndarray] | None


def check_add(
    documents: Sequence[Any] | None,
    ids: Sequence[Any] | None,
    metadatas: Sequence[Any] | None,
    embeddings: Sequence[Any] | None,
    dim: int,
    *,
    skip_empty: bool = False,
) -> AddBatch:
    """Validate everything ``Engine.add`` was given, before anything is encoded or written.

    With ``embeddings``, texts are an optional payload (empty allowed); without, every text
    must be non-empty unless ``skip_empty`` drops the empty ones (logged with their ids).
    """
    if documents is None and embeddings is None:
        raise InvalidInputError("add() needs documents=..., embeddings=..., or both")
    raw = as_list(documents, "documents") if documents is not None else None
    embs = as_list(embeddings, "embeddings") if embeddings is not None else None
    n = len(raw) if raw is not None else len(embs or [])
    if raw is not None and embs is not None and len(embs) != n:
        raise InvalidInputError(f"got {len(embs)} embeddings for {n} documents")
    ids_ = (
        check_ids(as_list(ids, "ids"), n)
        if ids is not None
        else [uuid.uuid4().hex for _ in range(n)]
    )
    metas = check_metadatas(metadatas, n)
    if raw is None:
        return AddBatch([""] * n, ids_, metas, to_vectors(embs or [], dim))
    if skip_empty:
        empty = {i for i, t in enumerate(raw) if isinstance(t, str) and not t.strip()}
        if empty:
            logger.warning(
                "skipping %d empty documents, ids %s",
                len(empty),
                [ids_[i] for i in sorted(empty)][:20],
            )
            keep = [i for i in range(n) if i not in empty]
            raw, ids_, metas = (
                [raw[i] for i in keep],
                [ids_[i] for i in keep],
                [metas[i] for i in keep],
            )
            embs = [embs[i] for i in keep] if embs is not None else None
    if embs is None:
        return AddBatch(check_texts(raw, hint=SKIP_EMPTY_HINT), ids_, metas, None)
    for i, text in enumerate(raw):
        if not isinstance(text, str):
            raise InvalidInputError(f"documents[{i}] must be a str, got {type(text).__name__}")
        check_encodable(text, f"documents[{i}]")
    return AddBatch(raw, ids_, metas, to_vectors(embs, dim))
