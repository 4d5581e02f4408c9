"""An engine used after ``close()`` says so (``EngineClosedError``); it raised sqlite3's
``ProgrammingError`` for a folder and an ``IndexFormatError`` calling an in-memory index
damaged."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from colmax import Engine
from colmax.errors import EngineClosedError

V = np.ones((2, 4), np.float32)
CALLS: dict[str, Callable[[Engine], object]] = {
    "search": lambda e: e.search(query_embeddings=V, k=1),
    "add": lambda e: e.add(embeddings=[V], ids=["b"]),
    "get": lambda e: e.get(["a"]),
    "len": len,
    "delete": lambda e: e.delete(["a"]),
}


@pytest.mark.parametrize("call", list(CALLS))
@pytest.mark.parametrize("in_folder", [True, False], ids=["folder", "memory"])
def test_use_after_close_says_closed(tmp_path: Path, in_folder: bool, call: str) -> None:
    engine = Engine(dim=4, path=tmp_path / "idx" if in_folder else None)
    engine.add(embeddings=[V], ids=["a"])
    engine.close()
    engine.close()  # twice is fine
    if call == "len" and not in_folder:
        return  # answered from memory, without the database: no error to check
    with pytest.raises(EngineClosedError, match="closed"):
        CALLS[call](engine)
    if in_folder:
        with Engine(path=tmp_path / "idx") as again:
            assert again.ids() == ["a"]
