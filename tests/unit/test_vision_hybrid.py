"""Hybrid search over page images: pages without text (image files, scans) give BM25 no
vocabulary; the search ranks by late interaction alone until pages with text arrive."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from colmax import Engine

pytest.importorskip("pypdfium2", reason='pip install "colmax[vision]"')
pytest.importorskip("bm25s", reason='pip install "colmax[hybrid]"')
from PIL import Image


@pytest.mark.parametrize("mode", ["rrf", "minmax"])
def test_image_pages_alone_rank_by_late_interaction(
    colpali_encoder: Any, text_pdf: Path, tmp_path: Path, mode: str
) -> None:
    # bm25s raised "max() arg is an empty sequence" through Engine.search(hybrid=...).
    scan = tmp_path / "scan.png"
    Image.new("RGB", (48, 64), "gray").save(scan)
    engine = Engine(colpali_encoder, path=tmp_path / "idx")
    engine.add(images=[Image.new("RGB", (48, 64), c) for c in ("white", "black")] + [scan])
    late = engine.search("revenue growth", k=3)
    hits = engine.search("revenue growth", k=3, hybrid=mode)
    assert [h.id for h in hits] == [h.id for h in late]
    assert all(set(h.scores or {}) == {"late"} for h in hits)
    first, *_ = engine.add_files([text_pdf], dpi=40)  # "Annual report 2023\nRevenue growth..."
    hits = {h.id: h for h in engine.search("revenue growth", k=6, hybrid=mode)}
    assert "bm25" in (hits[first].scores or {})
