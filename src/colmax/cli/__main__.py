"""``python -m colmax.cli``: the same as the ``colmax`` command."""

from __future__ import annotations

from colmax.cli import main

raise SystemExit(main())
