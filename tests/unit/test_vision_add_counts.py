"""``Engine.add(images=...)`` with ids or metadatas that do not match the pages: refused before
anything is encoded or written (more ids than images were committed and then refused; fewer
metadatas raised about "embeddings"; more were silently dropped), and a batch refused at its
commit leaves no image files behind."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from colmax import Engine
from colmax.errors import DuplicateIdError, InvalidInputError

pytest.importorskip("pypdfium2", reason='pip install "colmax[vision]"')
from PIL import Image


def _files(index: Path) -> list[str]:
    pages = index / "pages"
    return sorted(p.name for p in pages.rglob("*") if p.is_file()) if pages.exists() else []


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"ids": ["a", "b", "c"]}, "got 3 ids for 2 pages"),
        ({"ids": ["a"]}, "got 1 ids for 2 pages"),
        ({"metadatas": [{"x": 1}]}, "got 1 metadatas for 2 pages"),
        ({"metadatas": [{"x": 1}, {"x": 2}, {"x": 3}]}, "got 3 metadatas for 2 pages"),
    ],
    ids=["more-ids", "fewer-ids", "fewer-metadatas", "more-metadatas"],
)
def test_counts_are_checked_before_anything_is_written(
    colpali_encoder: Any, tmp_path: Path, given: dict, message: str
) -> None:
    engine = Engine(colpali_encoder, path=tmp_path / "idx")
    images = [Image.new("RGB", (48, 64), c) for c in ("white", "black")]
    with pytest.raises(InvalidInputError, match=message):
        engine.add(images=images, **given)
    assert len(engine) == 0 and _files(tmp_path / "idx") == []
    assert engine.add(images=images, ids=["a", "b"], metadatas=[{"x": 1}, {"x": 2}]) == ["a", "b"]
    assert [d.metadata["x"] for d in engine.get(["a", "b"])] == [1, 2]


def test_a_batch_refused_at_its_commit_leaves_no_image_files(
    colpali_encoder: Any, tmp_path: Path
) -> None:
    scan = tmp_path / "scan.png"
    Image.new("RGB", (48, 64), "red").save(scan)
    engine = Engine(colpali_encoder, path=tmp_path / "idx")
    with pytest.raises(DuplicateIdError):  # one path twice: the same id twice
        engine.add(images=[scan, scan])
    assert len(engine) == 0 and _files(tmp_path / "idx") == []


@pytest.mark.parametrize("name", ["scan", "photo.jfif", "page.JPG"])
def test_image_files_with_other_suffixes_are_stored(
    colpali_encoder: Any, tmp_path: Path, name: str
) -> None:
    # A readable image whose suffix the page store does not serve was encoded, then refused
    # ("unsupported page file suffix"); it is stored as PNG now (a known suffix: as given).
    path = tmp_path / name
    Image.new("RGB", (48, 64), "blue").save(path, format="JPEG")
    engine = Engine(colpali_encoder, path=tmp_path / "idx")
    assert engine.add(images=[path]) == [str(path)]
    data, mime = engine.page_image_bytes(str(path))
    assert mime == ("image/jpeg" if name == "page.JPG" else "image/png")
    assert (data == path.read_bytes()) == (name == "page.JPG")


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"ids": ["a", "b", "c"]}, "got 3 ids for 2 pages"),
        ({"metadatas": [{"x": 1}] * 3}, "got 3 metadatas for 2 pages"),
    ],
)
def test_a_stream_read_whole_is_checked_before_it_is_committed(
    colpali_encoder: Any, tmp_path: Path, given: dict, message: str
) -> None:
    # Pages streamed (an iterator, as read_pages gives) without commit_every are read whole,
    # so extra ids or metadatas are refused before the commit (they were committed, then
    # refused; extra metadatas were dropped).
    from colmax.vision.ingest import add_pages, image_pages

    engine = Engine(colpali_encoder, path=tmp_path / "idx")
    pages = image_pages([Image.new("RGB", (48, 64), c) for c in ("white", "black")], None)
    with pytest.raises(InvalidInputError, match=message):
        add_pages(colpali_encoder, engine.backend, engine._pages, iter(pages), **given)
    assert len(engine) == 0 and _files(tmp_path / "idx") == []


def test_the_page_store_serves_every_image_suffix_kept_as_given() -> None:
    # image_pages keeps a file's bytes only for these suffixes; the store must take them all.
    from colmax.vision.pages import IMAGE_SUFFIXES
    from colmax.vision.store import is_page_name

    assert all(is_page_name("0" * 64 + suffix) for suffix in IMAGE_SUFFIXES)
