"""The engine: the one object every door talks to (see :mod:`colmax.engine.core`)."""

from __future__ import annotations

from colmax.engine.core import Engine

__all__ = ["Engine"]
