"""PDF and image pages (pypdfium2, Pillow) and the page store."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from colmax.errors import IndexFormatError, InvalidInputError

pytest.importorskip("pypdfium2", reason='pip install "colmax[vision]"')
from PIL import Image

from colmax.vision.pages import read_pages
from colmax.vision.store import PageStore, is_page_name
from colmax.vision.tiny import SAMPLE_PAGES as PDF_PAGES


def test_pdf_pages_keep_their_text_layer(text_pdf: Path) -> None:
    pages = list(read_pages(text_pdf, dpi=72))
    assert [p.text for p in pages] == list(PDF_PAGES)
    assert [p.metadata for p in pages] == [{"source": str(text_pdf), "page": n} for n in (1, 2, 3)]
    assert pages[0].image.size == (612, 792)  # US letter at 72 dpi
    assert next(iter(read_pages(text_pdf, dpi=144))).image.size == (1224, 1584)
    # pages differ (the coloured box moves colour), so they are not one image three times
    assert not np.array_equal(np.asarray(pages[0].image), np.asarray(pages[1].image))


@pytest.mark.parametrize("dpi", [0, 5, 2000, 1.5, True], ids=str)
def test_bad_dpi(text_pdf: Path, dpi) -> None:
    with pytest.raises(InvalidInputError, match="dpi"):
        list(read_pages(text_pdf, dpi=dpi))


def test_every_path_is_checked_before_rendering(text_pdf: Path, tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="no such file"):
        next(read_pages([text_pdf, tmp_path / "gone.pdf"]))


def test_store_round_trip_and_dedup(tmp_path: Path) -> None:
    store = PageStore(tmp_path)
    image = Image.new("RGB", (20, 30), (10, 20, 30))
    name = store.put_image(image)
    assert store.put_image(image) == name and len(store.names()) == 1
    np.testing.assert_array_equal(np.asarray(store.image(name)), np.asarray(image))
    grid = np.arange(6, dtype=np.int32).reshape(2, 3)
    np.testing.assert_array_equal(store.grid(store.put_grid(grid)), grid)
    memory = PageStore(None)
    assert memory.read(memory.put(b"abc", ".png")) == b"abc"


@pytest.mark.parametrize(
    "name", ["../../etc/passwd", "a.png", "0" * 64 + ".exe", "/abs/" + "0" * 64 + ".png", 7]
)
def test_names_cannot_leave_the_store(tmp_path: Path, name) -> None:
    assert not is_page_name(name)
    with pytest.raises(IndexFormatError):
        PageStore(tmp_path).read(name)


def test_missing_file_is_a_damaged_index(tmp_path: Path) -> None:
    store = PageStore(tmp_path)
    name = store.put(b"data", ".png")
    (tmp_path / "pages" / name).unlink()
    with pytest.raises(IndexFormatError, match="damaged"):
        store.read(name)
