"""The codec's files on disk: one ``.npy`` per array under ``codecs/``, each checked on read.

A codec named ``<name>`` is six files, ``<name>.<part>.npy``:

- ``centroids`` ``(n_centroids, dim)`` float16;
- ``rotation``  ``(dim, dim)`` float32, orthogonal (the residuals' principal axes);
- ``cutoffs``   ``(dim, 255)`` float32: per axis ``2**width - 1`` ascending cutoffs, then +inf;
- ``weights``   ``(dim, 256)`` float32: per axis the decoded value of each bucket;
- ``widths``    ``(ceil(dim / 8),)`` int64: bits per coordinate of each group of 8 axes;
- ``meta``      10 float64: format, nbits, dim, n_centroids, the four training statistics
  (tokens, mean squared residual, mean squared error, corpus tokens) and the length byte's
  range (lo, hi).

Every file is written atomically and read with ``allow_pickle=False``; anything missing,
unreadable or inconsistent raises :class:`~colmax.errors.IndexFormatError` naming the file.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from colmax.errors import IndexFormatError
from colmax.indexes.plaid.transform import GROUP, MAX_LEVELS, WIDTHS
from colmax.store.fsutil import atomic_write_npy, load_npy
from colmax.store.storage import CODEC_DIR

__all__ = ["CodecParts", "part_names", "read_parts", "write_parts"]

FORMAT = 2
_ARRAYS = ("centroids", "rotation", "cutoffs", "weights", "widths")
_PARTS = (*_ARRAYS, "meta")
_META_LEN = 10


@dataclass(frozen=True)
class CodecParts:
    """What :func:`read_parts` validated: the numbers of ``meta`` and the arrays."""

    nbits: int
    stats: tuple[float, float, float, float]
    scale: tuple[float, float]
    arrays: dict[str, np.ndarray]


def part_names(name: str) -> list[str]:
    """File names of codec ``name`` (inside ``codecs/``)."""
    return [f"{name}.{part}.npy" for part in _PARTS]


def write_parts(
    folder: Path,
    name: str,
    *,
    header: tuple[int, int, int],
    stats: tuple[float, float, float, float],
    scale: tuple[float, float],
    arrays: dict[str, np.ndarray],
) -> None:
    """Write ``arrays`` and the meta file (``header`` = nbits, dim, n_centroids)."""
    out = folder / CODEC_DIR
    out.mkdir(exist_ok=True)
    meta = np.array([FORMAT, *header, *stats, *scale], dtype=np.float64)
    for part in _ARRAYS:
        atomic_write_npy(out / f"{name}.{part}.npy", arrays[part])
    atomic_write_npy(out / f"{name}.meta.npy", meta)  # last: a codec without meta is incomplete


def read_parts(folder: Path, name: str, dim: int, allowed_nbits: Sequence[int]) -> CodecParts:
    """Read and validate codec ``name`` for an index of dimension ``dim``.

    Raises:
        IndexFormatError: a file is missing, unreadable or inconsistent (naming the file).
    """
    base = folder / CODEC_DIR
    where = base / f"{name}.meta.npy"
    meta = load_npy(where, "codec")
    if meta.dtype != np.float64 or meta.ndim != 1 or not np.isfinite(meta).all():
        raise IndexFormatError(f"{where}: damaged codec meta {meta.dtype}{meta.shape}.")
    fmt = int(meta[0]) if meta.size else -1
    if fmt != FORMAT:
        raise IndexFormatError(
            f"{where}: codec format {fmt} is not supported (expected {FORMAT}); a format-1 "
            "codec was written by a development version of colmax: build the index again."
        )
    if meta.shape != (_META_LEN,):
        raise IndexFormatError(f"{where}: damaged codec meta {meta.dtype}{meta.shape}.")
    _, nbits, mdim, n_c = (int(v) for v in meta[:4])
    if nbits not in allowed_nbits or mdim != dim or n_c < 1:
        raise IndexFormatError(
            f"{where}: codec says nbits={nbits}, dim={mdim}, {n_c} centroids; the index "
            f"has dim {dim} and nbits must be one of {tuple(allowed_nbits)}."
        )
    lo, hi = float(meta[8]), float(meta[9])
    if not 0 < lo <= hi:
        raise IndexFormatError(f"{where}: damaged length range [{lo}, {hi}].")
    arrays = {part: load_npy(base / f"{name}.{part}.npy", "codec") for part in _ARRAYS}
    expect = {
        "centroids": (np.float16, (n_c, dim)),
        "rotation": (np.float32, (dim, dim)),
        "cutoffs": (np.float32, (dim, MAX_LEVELS - 1)),
        "weights": (np.float32, (dim, MAX_LEVELS)),
        "widths": (np.int64, (-(-dim // GROUP),)),
    }
    for part, (dtype, shape) in expect.items():
        arr = arrays[part]
        finite = part == "cutoffs" or np.isfinite(arr).all()
        if arr.dtype != dtype or arr.shape != shape or not finite:
            raise IndexFormatError(
                f"{base / f'{name}.{part}.npy'}: damaged codec file: "
                f"{arr.dtype}{arr.shape}, expected finite {np.dtype(dtype)}{shape}."
            )
    _check_tables(base / name, tuple(int(w) for w in arrays["widths"]), arrays)
    stats = (float(meta[4]), float(meta[5]), float(meta[6]), float(meta[7]))
    return CodecParts(nbits, stats, (lo, hi), arrays)


def _check_tables(stem: Path, widths: tuple[int, ...], arrays: dict[str, np.ndarray]) -> None:
    """Widths from the allowed set; per axis, ``2**width - 1`` finite ascending cutoffs then
    ``+inf``; a rotation that is orthogonal."""
    if any(w not in WIDTHS for w in widths):
        raise IndexFormatError(f"{stem}.widths.npy: widths must be in {WIDTHS}, got {widths}.")
    cutoffs = arrays["cutoffs"]
    per_axis = np.repeat(np.asarray(widths), GROUP)[: cutoffs.shape[0]]
    used = np.arange(cutoffs.shape[1]) < ((1 << per_axis) - 1)[:, None]
    if not (np.isfinite(cutoffs[used]).all() and np.isposinf(cutoffs[~used]).all()):
        raise IndexFormatError(
            f"{stem}.cutoffs.npy: damaged cutoffs (finite where used, +inf after)."
        )
    with np.errstate(invalid="ignore"):  # inf - inf past the used cutoffs
        descending = np.diff(cutoffs, axis=1) < 0
    if np.any(descending & used[:, 1:]):
        raise IndexFormatError(f"{stem}.cutoffs.npy: cutoffs are not ascending.")
    rotation = arrays["rotation"].astype(np.float64)
    if np.abs(rotation.T @ rotation - np.eye(rotation.shape[0])).max() > 1e-3:
        raise IndexFormatError(f"{stem}.rotation.npy: the rotation is not orthogonal.")
