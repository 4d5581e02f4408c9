"""How an engine gets its backend: one code path for every way of opening or creating an index.

``Engine(...)``, ``Engine.from_pretrained(...)`` and ``Engine.load(...)`` all end in
:func:`open_or_create` with the same :class:`OpenOptions`, so every option works in each of
them. Backends are found by kind in :mod:`colmax.backends.registry`; nothing here names one.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from colmax import __version__
from colmax.backends.base import Backend, BackendOptions
from colmax.backends.registry import create_backend, kinds, open_backend
from colmax.chunking.splitter import Chunker
from colmax.encoders.base import Encoder
from colmax.errors import EncoderMismatchError, InvalidInputError
from colmax.store.manifest import Manifest
from colmax.store.storage import is_index_folder

__all__ = ["OpenOptions", "check_compatible", "chunking_of", "deprecated_options", "open_or_create"]


@dataclass(frozen=True)
class OpenOptions:
    """Every option of opening or creating an index (the same for each constructor).

    Attributes:
        index: the kind for a new index (``None``: ``"flat"``, or the folder's own).
        index_options: settings of that kind (Qdrant connection and collection, plaid build
            settings; plaid search widths also when opening).
        lock_timeout: seconds a writer waits for another process's write.
        chunk_tokens, chunk_overlap: split added documents into chunks (``None``: the
            folder's recorded setting, none for a new index).
    """

    index: str | None = None
    index_options: Mapping[str, Any] = field(default_factory=dict)
    lock_timeout: float = 60.0
    chunk_tokens: int | None = None
    chunk_overlap: int = 0


def deprecated_options(index_options: Mapping[str, Any] | None, **shortcuts: Any) -> dict[str, Any]:
    """``index_options`` with the old keyword spellings (``qdrant_url=``, ``api_key=``,
    ``collection=``) folded in, each with a :class:`DeprecationWarning` (removed in 0.3)."""
    merged = dict(index_options or {})
    names = {"qdrant_url": "url", "api_key": "api_key", "collection": "collection"}
    for name, value in shortcuts.items():
        if value is None:
            continue
        key = names[name]
        warnings.warn(
            f"{name}=... is deprecated: pass index_options={{{key!r}: ...}}",
            DeprecationWarning,
            stacklevel=3,
        )
        merged[key] = value
    return merged


def open_or_create(
    folder: Path | None, encoder: Encoder | None, dim: int | None, options: OpenOptions
) -> Backend:
    """The backend of the index in ``folder``, or a new one (in ``folder`` or in memory).

    Raises:
        InvalidInputError: no encoder and no ``dim`` for a new index, a ``dim`` that
            contradicts the encoder, an unknown ``index``, or one that differs from the folder's.
        EncoderMismatchError: the folder was built with another model or dimension.
    """
    if options.index is not None and options.index not in kinds():
        raise InvalidInputError(f"unknown index {options.index!r}; available: {list(kinds())}")
    existing = folder is not None and is_index_folder(folder)
    if encoder is None and dim is None and not existing:
        raise InvalidInputError("Engine needs an encoder, or dim=... for precomputed vectors")
    if encoder is not None and dim is not None and dim != encoder.dim:
        raise InvalidInputError(f"dim={dim} contradicts the encoder's dimension {encoder.dim}")
    backend_options = BackendOptions(dict(options.index_options), options.lock_timeout)
    if folder is not None and existing:
        manifest = Manifest.read(folder)
        if options.index is not None and options.index != manifest.index_kind:
            raise InvalidInputError(
                f"{folder} holds a {manifest.index_kind!r} index, not {options.index!r}; "
                "omit index=... to open it as it is"
            )
        check_compatible(manifest, encoder, dim, folder)
        return open_backend(folder, manifest, backend_options)
    manifest = Manifest(
        dim=encoder.dim if encoder is not None else int(dim),  # type: ignore[arg-type]
        index_kind=options.index or "flat",
        encoder=encoder.config() if encoder is not None else None,
        colmax_version=__version__,
        chunking=_chunking_record(options),
    )
    return create_backend(folder, manifest, backend_options)


def chunking_of(
    manifest_chunking: Mapping[str, int] | None, options: OpenOptions, encoder: Encoder | None
) -> Chunker | None:
    """The chunker an engine uses: the one asked for, else the one the folder records."""
    if options.chunk_tokens is not None:
        return make_chunker(encoder, options.chunk_tokens, options.chunk_overlap)
    if manifest_chunking:
        tokens = manifest_chunking.get("tokens")
        return make_chunker(encoder, tokens, manifest_chunking.get("overlap", 0))
    return None


def make_chunker(encoder: Encoder | None, tokens: int | None, overlap: int = 0) -> Chunker | None:
    """A :class:`Chunker` with the encoder's tokenizer (``None`` when ``tokens`` is ``None``)."""
    from colmax.chunking.parents import chunker_with

    return chunker_with(encoder, tokens, overlap)


def _chunking_record(options: OpenOptions) -> dict[str, int] | None:
    if options.chunk_tokens is None:
        return None
    Chunker(options.chunk_tokens, options.chunk_overlap)  # validates before anything is written
    return {"tokens": options.chunk_tokens, "overlap": options.chunk_overlap}


def check_compatible(
    manifest: Manifest, encoder: Encoder | None, dim: int | None, path: Path
) -> None:
    """Refuse to open ``path`` with another model or dimension than it was built with.

    Raises:
        EncoderMismatchError: the dimension or the model differs.
    """
    if dim is not None and dim != manifest.dim:
        raise EncoderMismatchError(f"{path} holds vectors of dimension {manifest.dim}, not {dim}")
    if encoder is None:
        return
    if encoder.dim != manifest.dim:
        raise EncoderMismatchError(
            f"{path} was built with dimension {manifest.dim}, but the encoder gives {encoder.dim}; "
            "open it with Engine.load(path) to use the model it was built with"
        )
    built = (manifest.encoder or {}).get("model_name_or_path")
    if built is not None and built != encoder.config().get("model_name_or_path"):
        raise EncoderMismatchError(
            f"{path} was built with model {built!r}, not {encoder.name!r}; "
            "open it with Engine.load(path) to use the model it was built with"
        )
