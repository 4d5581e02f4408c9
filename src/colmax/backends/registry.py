"""Index kinds and the backends that serve them, imported only when a kind is used.

The engine asks this registry, never a backend module, for the backend of an index kind, so a
new backend is one :func:`register` call (and an optional dependency stays optional: its module
is imported when the kind is first created or opened).

Examples:
    >>> kinds()
    ('flat', 'plaid', 'qdrant')
    >>> backend_class("flat").__name__
    'LocalBackend'
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

from colmax.backends.base import Backend, BackendOptions
from colmax.errors import InvalidInputError
from colmax.store.manifest import Manifest

__all__ = ["backend_class", "create_backend", "kinds", "open_backend", "register"]


@dataclass(frozen=True)
class _Entry:
    target: str  # "module:Class"
    extra: str | None  # the pip extra that installs its dependencies


_KINDS: dict[str, _Entry] = {}


def register(kind: str, target: str, *, extra: str | None = None) -> None:
    """Serve ``index=kind`` with the backend class at ``target`` (``"package.module:Class"``).

    Args:
        kind: the name users pass as ``index=``.
        target: where the :class:`~colmax.backends.base.Backend` subclass lives; imported on
            first use.
        extra: the ``colmax[...]`` extra named when that import fails.
    """
    if not kind or not isinstance(kind, str):
        raise InvalidInputError(f"an index kind is a non-empty string, got {kind!r}")
    _KINDS[kind] = _Entry(target, extra)


def kinds() -> tuple[str, ...]:
    """The registered index kinds, in registration order."""
    return tuple(_KINDS)


def backend_class(kind: str) -> type[Backend]:
    """The backend class of ``kind`` (its module imported now).

    Raises:
        InvalidInputError: an unknown kind, or its optional dependencies are missing.
    """
    entry = _KINDS.get(kind)
    if entry is None:
        raise InvalidInputError(f"unknown index {kind!r}; available: {list(_KINDS)}")
    module, _, name = entry.target.partition(":")
    try:
        cls = getattr(importlib.import_module(module), name)
    except ImportError as exc:
        hint = f': pip install "colmax[{entry.extra}]"' if entry.extra else ""
        raise InvalidInputError(
            f"index={kind!r} needs the {entry.extra} extra{hint} ({exc})"
        ) from exc
    if not (isinstance(cls, type) and issubclass(cls, Backend)):  # a bad register() call
        raise InvalidInputError(f"{entry.target} is not a colmax Backend")
    return cls


def create_backend(folder: Path | None, manifest: Manifest, options: BackendOptions) -> Backend:
    """A new backend of ``manifest.index_kind`` (see :meth:`Backend.create`)."""
    return backend_class(manifest.index_kind).create(folder, manifest, options)


def open_backend(folder: Path, manifest: Manifest, options: BackendOptions) -> Backend:
    """The backend of the index in ``folder`` (see :meth:`Backend.open`)."""
    return backend_class(manifest.index_kind).open(folder, manifest, options)


register("flat", "colmax.backends.local:LocalBackend")
register("plaid", "colmax.backends.local:LocalBackend")
register("qdrant", "colmax.backends.qdrant:QdrantBackend", extra="qdrant")
