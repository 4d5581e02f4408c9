"""Where documents and vectors live: local (SQLite + segments) or Qdrant. See :mod:`.base`."""

from __future__ import annotations

from colmax.backends.base import Backend

__all__ = ["Backend"]
