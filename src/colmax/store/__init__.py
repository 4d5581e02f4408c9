"""Persistence of an index folder: manifest, SQLite documents, segments, locks, filters."""

from __future__ import annotations
