"""``manifest.json``: what an index folder is, which model built it, and its shape.

The manifest is the first file read when a folder is opened, so it is validated strictly: a
folder that is not a colmax index, a manifest from a newer format, or one with impossible values
raises :class:`~colmax.errors.IndexFormatError` naming the file and the problem.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from colmax.errors import IndexFormatError, InvalidInputError
from colmax.store.fsutil import atomic_write_json, check_no_links

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "MANIFEST_NAME", "Manifest"]

FORMAT_NAME = "colmax-index"
FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
_MAX_DIM = 65_536
_DTYPES = ("float16",)


@dataclass
class Manifest:
    """Contents of ``manifest.json``.

    ``counts`` and ``generation`` are a summary rewritten after each commit; the authoritative
    state is the SQLite database (see :mod:`colmax.store.folder`). ``chunking`` is how the
    engine splits documents it adds (``{"tokens": 48, "overlap": 0}``; ``None``: it does not),
    recorded so every door that opens the folder splits and groups the same way (older colmax
    versions ignore the key).
    """

    dim: int
    index_kind: str = "flat"
    dtype: str = "float16"
    encoder: dict[str, Any] | None = None
    index_settings: dict[str, Any] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)
    generation: int = 0
    colmax_version: str = ""
    chunking: dict[str, int] | None = None

    def __post_init__(self) -> None:
        # Checked here, before any folder is created for this manifest.
        dim = self.dim
        if isinstance(dim, bool) or not isinstance(dim, int) or not 0 < dim <= _MAX_DIM:
            raise InvalidInputError(f"dim must be an int from 1 to {_MAX_DIM}, got {dim!r}")

    def to_json(self) -> dict[str, Any]:
        return {
            "format": FORMAT_NAME,
            "format_version": FORMAT_VERSION,
            "colmax_version": self.colmax_version,
            "dim": self.dim,
            "dtype": self.dtype,
            "index": {"kind": self.index_kind, **self.index_settings},
            "encoder": self.encoder,
            "counts": dict(self.counts),
            "generation": self.generation,
            **({"chunking": dict(self.chunking)} if self.chunking else {}),
        }

    def write(self, folder: Path) -> None:
        atomic_write_json(folder / MANIFEST_NAME, self.to_json())

    @classmethod
    def read(cls, folder: Path) -> Manifest:
        """Read and validate ``folder/manifest.json``.

        Raises:
            IndexFormatError: missing, unreadable, foreign or inconsistent manifest.
        """
        path = folder / MANIFEST_NAME
        if not path.is_file() and not path.is_symlink():
            raise IndexFormatError(
                f"{folder} is not a colmax index: {MANIFEST_NAME} is missing. "
                "Create an index with Engine.save(path) or Engine.from_pretrained(..., path=path)."
            )
        # Before anything reads through a link (or cleans up) outside the folder.
        check_no_links(folder)
        if path.stat().st_size > 16 * 2**20:
            raise IndexFormatError(f"{path}: manifest is larger than 16 MiB; the file is damaged.")
        try:
            raw = json.loads(path.read_text(encoding="utf-8"))
        except (ValueError, RecursionError) as exc:  # bad UTF-8 or JSON, or absurd nesting
            raise IndexFormatError(
                f"{path}: not valid JSON ({exc}); the manifest is damaged."
            ) from exc
        return cls._from_json(raw, path)

    @classmethod
    def _from_json(cls, raw: Any, path: Path) -> Manifest:
        if not isinstance(raw, dict) or raw.get("format") != FORMAT_NAME:
            raise IndexFormatError(
                f"{path}: not a colmax index manifest (no 'format': '{FORMAT_NAME}')."
            )
        version = raw.get("format_version")
        if not isinstance(version, int) or version < 1:
            raise IndexFormatError(f"{path}: invalid format_version {version!r}.")
        if version > FORMAT_VERSION:
            raise IndexFormatError(
                f"{path}: index format version {version} was written by a newer colmax; "
                f"this one reads up to version {FORMAT_VERSION}. Upgrade colmax."
            )
        dim = raw.get("dim")
        if not isinstance(dim, int) or isinstance(dim, bool) or not 0 < dim <= _MAX_DIM:
            raise IndexFormatError(f"{path}: invalid dim {dim!r} (expected 1..{_MAX_DIM}).")
        dtype = raw.get("dtype")
        if dtype not in _DTYPES:
            raise IndexFormatError(
                f"{path}: unsupported dtype {dtype!r} (expected one of {_DTYPES})."
            )
        index = raw.get("index")
        if not isinstance(index, dict) or not isinstance(index.get("kind"), str):
            raise IndexFormatError(f"{path}: missing or invalid 'index' section.")
        encoder = raw.get("encoder")
        if encoder is not None and not isinstance(encoder, dict):
            raise IndexFormatError(f"{path}: 'encoder' must be an object or null.")
        counts = raw.get("counts", {})
        generation = raw.get("generation", 0)
        if not isinstance(counts, dict) or not isinstance(generation, int):
            raise IndexFormatError(f"{path}: invalid 'counts' or 'generation'.")
        settings = {k: v for k, v in index.items() if k != "kind"}
        chunking = raw.get("chunking")
        if chunking is not None and not _valid_chunking(chunking):
            raise IndexFormatError(
                f'{path}: \'chunking\' must be null or {{"tokens": n >= 1, "overlap": 0 <= m '
                f"< n}}, got {chunking!r:.200}."
            )
        return cls(
            dim=dim,
            index_kind=index["kind"],
            dtype=dtype,
            encoder=encoder,
            index_settings=settings,
            counts={k: v for k, v in counts.items() if isinstance(v, int)},
            generation=generation,
            colmax_version=str(raw.get("colmax_version", "")),
            chunking=chunking,
        )


def _valid_chunking(chunking: Any) -> bool:
    """What ``Engine`` writes: ``{"tokens": n, "overlap": m}`` with ``n >= 1``, ``0 <= m < n``
    (a damaged entry is the folder's fault, so IndexFormatError, not the chunker's error)."""
    if not isinstance(chunking, dict) or set(chunking) - {"tokens", "overlap"}:
        return False
    tokens, overlap = chunking.get("tokens"), chunking.get("overlap", 0)
    if not isinstance(tokens, int) or not isinstance(overlap, int):
        return False
    return not isinstance(tokens, bool) and not isinstance(overlap, bool) and 0 <= overlap < tokens
