"""Read a colbert-ai (ColBERTv2 / PLAID) index folder and decode its token vectors.

An index that colbert-ai's ``Indexer`` wrote (directly, or through RAGatouille) holds::

    metadata.json           {"config": {..., "dim", "nbits", "checkpoint", "doc_maxlen"}, "num_chunks", ...}
    plan.json               the indexing plan (same config; present while / after indexing)
    centroids.pt            (n_centroids, dim) float16: the k-means centroids
    buckets.pt              (bucket_cutoffs (2**nbits - 1,), bucket_weights (2**nbits,))
    avg_residual.pt         mean absolute residual (informational)
    {i}.codes.pt            (n_embeddings_i,) int: centroid id of every token vector of chunk i
    {i}.residuals.pt        (n_embeddings_i, dim * nbits / 8) uint8: packed residual buckets
    doclens.{i}.json        tokens per passage of chunk i
    {i}.metadata.json       {"passage_offset", "num_passages", "num_embeddings", "embedding_offset"}
    ivf.pid.pt / ivf.pt     inverted lists centroid -> passages (not needed to decode)

A token vector is stored as its nearest centroid plus, per dimension, the index of a bucket
whose weight approximates the residual (ColBERTv2, Santhanam et al. 2022, section 3.2). Each
dimension's bucket index takes ``nbits`` bits, written least significant bit first and packed
into bytes most significant bit first (``numpy.packbits``). Decoding is therefore::

    vector = normalize(centroids[code] + bucket_weights[bucket index of each dimension])

``.pt`` files are read with ``torch.load(weights_only=True)`` only: tensors and tuples of
tensors, never arbitrary pickled objects. Anything unexpected raises
:class:`~colmax.errors.IndexFormatError` naming the file.
"""

from __future__ import annotations

import json
import pickle
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from colmax.errors import IndexFormatError, ModelLoadError
from colmax.torch_load import safe_torch_load

__all__ = ["PlaidChunk", "PlaidIndex", "decode_vectors", "is_plaid_index", "read_plaid_index"]

_MAX_JSON_BYTES = 2**30
_NBITS = (1, 2, 4, 8)


@dataclass(frozen=True)
class PlaidChunk:
    """One chunk of passages: ``doclens[j]`` token vectors for passage ``passage_offset + j``."""

    index: int
    passage_offset: int
    doclens: np.ndarray  # int64 (num_passages,)


@dataclass(frozen=True)
class PlaidIndex:
    """A colbert-ai PLAID index folder, read and checked (vectors are decoded on demand).

    Attributes:
        folder: the index folder.
        config: the ``config`` section of ``metadata.json`` (colbert-ai's ``ColBERTConfig``).
        dim: vector dimension.
        nbits: bits per dimension of the residual buckets.
        centroids: ``(n_centroids, dim)`` float32.
        bucket_weights: ``(2**nbits,)`` float32 residual value of each bucket.
        chunks: the chunks in passage order.
    """

    folder: Path
    config: dict[str, Any]
    dim: int
    nbits: int
    centroids: np.ndarray
    bucket_weights: np.ndarray
    chunks: tuple[PlaidChunk, ...]

    @property
    def num_passages(self) -> int:
        """Passages in the chunks (colbert-ai never removes a passage from a chunk)."""
        return sum(len(c.doclens) for c in self.chunks)

    @property
    def checkpoint(self) -> str | None:
        """The model the index was built with, as recorded (Hub id or a local path)."""
        value = self.config.get("checkpoint")
        return value if isinstance(value, str) and value else None

    def iter_vectors(self, batch: int = 4096) -> Iterator[tuple[int, list[np.ndarray]]]:
        """Decoded vectors, ``(first passage id, [(doclen, dim) float32, ...])`` per batch.

        Args:
            batch: passages per yielded list (bounds memory: one batch decoded at a time).

        Raises:
            IndexFormatError: a codes or residuals file is missing, damaged or of the wrong size.
        """
        for chunk in self.chunks:
            codes, residuals = self._chunk_arrays(chunk)
            ends = np.cumsum(chunk.doclens)
            starts = ends - chunk.doclens
            for first in range(0, len(chunk.doclens), batch):
                last = min(first + batch, len(chunk.doclens))
                lo, hi = int(starts[first]), int(ends[last - 1])
                flat = decode_vectors(
                    codes[lo:hi], residuals[lo:hi], self.centroids, self.bucket_weights, self.nbits
                )
                cuts = (ends[first:last] - lo)[:-1]
                yield chunk.passage_offset + first, np.split(flat, cuts)

    def _chunk_arrays(self, chunk: PlaidChunk) -> tuple[np.ndarray, np.ndarray]:
        n = int(chunk.doclens.sum())
        codes_path = self.folder / f"{chunk.index}.codes.pt"
        codes = _tensor(load_tensors(codes_path), codes_path).numpy()
        if codes.ndim != 1 or codes.dtype.kind not in "iu" or len(codes) != n:
            raise IndexFormatError(
                f"{codes_path}: expected {n} integer centroid ids (the sum of doclens.{chunk.index}.json), "
                f"got shape {codes.shape} of {codes.dtype}"
            )
        if n and (codes.min() < 0 or codes.max() >= len(self.centroids)):
            raise IndexFormatError(
                f"{codes_path}: centroid ids outside 0..{len(self.centroids) - 1}"
            )
        res_path = self.folder / f"{chunk.index}.residuals.pt"
        residuals = _tensor(load_tensors(res_path), res_path).numpy()
        width = self.dim * self.nbits // 8
        if residuals.dtype != np.uint8 or residuals.shape != (n, width):
            raise IndexFormatError(
                f"{res_path}: expected uint8 residuals of shape ({n}, {width}), "
                f"got {residuals.shape} of {residuals.dtype}"
            )
        return codes.astype(np.int64), residuals


def decode_vectors(
    codes: np.ndarray,
    residuals: np.ndarray,
    centroids: np.ndarray,
    bucket_weights: np.ndarray,
    nbits: int,
) -> np.ndarray:
    """Decompress ColBERTv2 residual-coded vectors.

    Args:
        codes: ``(n,)`` centroid id of each vector.
        residuals: ``(n, dim * nbits // 8)`` uint8 packed bucket indices.
        centroids: ``(n_centroids, dim)`` float32.
        bucket_weights: ``(2**nbits,)`` float32.
        nbits: bits per bucket index.

    Returns:
        ``(n, dim)`` float32, L2-normalised rows.

    Examples:
        >>> centroids = np.array([[1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]], dtype=np.float32)
        >>> weights = np.array([-0.5, 0.5], dtype=np.float32)
        >>> packed = np.packbits([[0, 1, 0, 0, 0, 0, 0, 0]], axis=1)  # dim 1 gets bucket 1
        >>> decode_vectors(np.array([0]), packed, centroids, weights, nbits=1).round(3)[0, :3]
        array([ 0.354,  0.354, -0.354], dtype=float32)
    """
    n, dim = len(codes), centroids.shape[1]
    bits = np.unpackbits(residuals, axis=1).reshape(n, dim, nbits)
    # Bit j of a bucket index is stored at position j within its dimension (LSB first).
    place = (1 << np.arange(nbits, dtype=np.uint16)).astype(np.uint16)
    buckets = (bits.astype(np.uint16) * place).sum(axis=2)
    vectors = centroids[codes] + bucket_weights[buckets]
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.maximum(norms, 1e-12)).astype(np.float32)


def is_plaid_index(folder: str | Path) -> bool:
    """Whether ``folder`` looks like a colbert-ai index (``metadata.json`` + ``centroids.pt``)."""
    folder = Path(folder)
    return (folder / "metadata.json").is_file() and (folder / "centroids.pt").is_file()


def read_plaid_index(folder: str | Path) -> PlaidIndex:
    """Open a colbert-ai PLAID index folder and check that its files agree.

    Args:
        folder: the index folder (RAGatouille: ``.ragatouille/colbert/indexes/<name>``).

    Returns:
        The index, with centroids and bucket weights loaded; vectors decode on demand.

    Raises:
        IndexFormatError: not a colbert-ai index, a file is missing, unreadable, of an
            unexpected type or shape, or the files contradict each other.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise IndexFormatError(f"{folder}: no such index folder")
    meta_path = folder / "metadata.json"
    if not meta_path.is_file():
        raise IndexFormatError(
            f"{folder} is not a colbert-ai / RAGatouille index: metadata.json is missing"
        )
    meta = read_json(meta_path)
    config = meta.get("config") if isinstance(meta, dict) else None
    if not isinstance(config, dict):
        raise IndexFormatError(f"{meta_path}: no 'config' object; not a colbert-ai index")
    dim, nbits = config.get("dim"), config.get("nbits")
    if not _positive_int(dim) or nbits not in _NBITS or (dim * nbits) % 8:
        raise IndexFormatError(f"{meta_path}: invalid dim {dim!r} / nbits {nbits!r}")
    num_chunks = meta.get("num_chunks")
    if not _positive_int(num_chunks):
        raise IndexFormatError(f"{meta_path}: invalid num_chunks {num_chunks!r}")

    cpath = folder / "centroids.pt"
    centroids = _tensor(load_tensors(cpath), cpath).float().numpy()
    if centroids.ndim != 2 or centroids.shape[1] != dim or not np.isfinite(centroids).all():
        raise IndexFormatError(f"{cpath}: expected finite centroids of shape (n, {dim})")
    bpath = folder / "buckets.pt"
    buckets = load_tensors(bpath)
    if not (isinstance(buckets, (tuple, list)) and len(buckets) == 2):
        raise IndexFormatError(f"{bpath}: expected (bucket_cutoffs, bucket_weights)")
    weights = _tensor(buckets[1], bpath).float().numpy()
    if weights.shape != (2**nbits,) or not np.isfinite(weights).all():
        raise IndexFormatError(f"{bpath}: expected {2**nbits} finite bucket weights")

    chunks = tuple(_read_chunk(folder, i) for i in range(num_chunks))
    expected = 0
    for chunk in chunks:
        if chunk.passage_offset != expected:
            raise IndexFormatError(
                f"{folder / f'{chunk.index}.metadata.json'}: passage_offset {chunk.passage_offset}, "
                f"expected {expected}"
            )
        expected += len(chunk.doclens)
    return PlaidIndex(folder, config, int(dim), int(nbits), centroids, weights, chunks)


def _read_chunk(folder: Path, i: int) -> PlaidChunk:
    path = folder / f"doclens.{i}.json"
    doclens = read_json(path)
    if not isinstance(doclens, list) or not all(_count(x) for x in doclens):
        raise IndexFormatError(f"{path}: expected a list of non-negative token counts")
    meta_path = folder / f"{i}.metadata.json"
    meta = read_json(meta_path)
    offset = meta.get("passage_offset") if isinstance(meta, dict) else None
    if not _count(offset) or meta.get("num_passages", len(doclens)) != len(doclens):
        raise IndexFormatError(
            f"{meta_path}: passage_offset / num_passages disagree with doclens.{i}.json"
        )
    return PlaidChunk(i, int(offset), np.asarray(doclens, dtype=np.int64))  # type: ignore[arg-type]


def read_json(path: Path) -> Any:
    """Parse a JSON file of the index, raising :class:`IndexFormatError` naming it."""
    if not path.is_file():
        raise IndexFormatError(f"{path} is missing; the index folder is incomplete")
    if path.stat().st_size > _MAX_JSON_BYTES:
        raise IndexFormatError(f"{path}: larger than 1 GiB; refusing to read it")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise IndexFormatError(f"{path}: not valid JSON ({exc})") from exc


def load_tensors(path: Path) -> Any:
    """``torch.load(path, weights_only=True)``: tensors and plain containers, nothing else.

    Raises:
        IndexFormatError: missing file, or a file that is not a tensor file (``weights_only``
            refuses pickled objects other than tensors and containers of them).
    """
    if not path.is_file():
        raise IndexFormatError(f"{path} is missing; the index folder is incomplete")
    try:
        return safe_torch_load(path)
    except ModelLoadError as exc:  # an unsafe torch: say so about this index file
        raise IndexFormatError(str(exc)) from exc
    except (pickle.UnpicklingError, RuntimeError, EOFError, zipfile.BadZipFile, ValueError) as exc:
        raise IndexFormatError(
            f"{path}: not a tensor file colmax can read safely ({type(exc).__name__}: "
            f"{str(exc).splitlines()[0] if str(exc) else ''})"
        ) from exc


def _tensor(value: Any, path: Path) -> torch.Tensor:
    if not isinstance(value, torch.Tensor):
        raise IndexFormatError(f"{path}: expected a tensor, found {type(value).__name__}")
    return value


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0
