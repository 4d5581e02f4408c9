"""Pages to index: images as they are, PDFs rendered page by page with their text layer.

:func:`read_pages` turns files and folders into :class:`Page` records (image, text, metadata)
that ``Engine.add_files`` embeds. A PDF page is rendered with pypdfium2 at ``dpi`` dots per
inch and keeps its text layer as the page text, so an LLM gets text and the user gets the page;
an image file's text is empty. Pages stream one at a time, so a large folder never sits in
memory as images.

Needs ``pip install "colmax[vision]"`` (Pillow, pypdfium2).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from colmax.errors import InvalidInputError

__all__ = ["IMAGE_SUFFIXES", "PDF_SUFFIXES", "Page", "load_image", "page_id", "read_pages"]

#: Image files :func:`read_pages` takes (lower-case suffixes).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".bmp", ".gif")
PDF_SUFFIXES = (".pdf",)
#: Default PDF rendering resolution: legible pages, ~1275 x 1650 pixels for US letter.
DEFAULT_DPI = 150


def _pil() -> Any:
    try:
        from PIL import Image
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError('page images need Pillow: pip install "colmax[vision]"') from exc
    return Image


def _pdfium() -> Any:
    try:
        import pypdfium2
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise ImportError('PDF pages need pypdfium2: pip install "colmax[vision]"') from exc
    return pypdfium2


@dataclass(frozen=True)
class Page:
    """One page to index.

    Attributes:
        image: the page as an RGB PIL image.
        text: its text layer (PDF), or ``""``.
        metadata: ``{"source": path, "page": n}`` (``n`` counts from 1; image files have no
            ``page``).
        data: the file's own bytes when the page *is* an image file (stored as they are,
            instead of re-encoding a JPEG scan as PNG), else ``None``.
        suffix: the suffix of ``data`` (``".jpg"``...), or ``".png"``.
    """

    image: Any
    text: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)
    data: bytes | None = None
    suffix: str = ".png"

    @property
    def id(self) -> str:
        """The page's document id: :func:`page_id` of its source and page number."""
        return page_id(str(self.metadata.get("source", "")), self.metadata.get("page"))


def page_id(source: str, page: int | None) -> str:
    """Document id of a page: ``"report.pdf#page=3"`` (``#page=`` as in PDF URLs), or the path
    of an image file.

    Examples:
        >>> page_id("report.pdf", 3), page_id("scan.png", None)
        ('report.pdf#page=3', 'scan.png')
    """
    return source if page is None else f"{source}#page={page}"


def load_image(item: Any) -> Any:
    """An RGB PIL image from a PIL image or an image file path.

    Raises:
        InvalidInputError: not an image, or a file that cannot be read as one.
    """
    image_mod = _pil()
    if isinstance(item, image_mod.Image):
        return item if item.mode == "RGB" else item.convert("RGB")
    if isinstance(item, (str, os.PathLike)):
        path = Path(item)
        try:
            with image_mod.open(path) as opened:
                return opened.convert("RGB")
        except (OSError, ValueError) as exc:
            raise InvalidInputError(f"{str(path)!r} is not a readable image: {exc}") from exc
    raise InvalidInputError(
        f"images must be PIL images or image file paths, got {type(item).__name__}"
    )


def read_pages(
    paths: Sequence[str | os.PathLike[str]] | str | os.PathLike[str], *, dpi: int = DEFAULT_DPI
) -> Iterator[Page]:
    """Stream the pages of PDFs and image files, and of the folders given (walked recursively,
    files in sorted order; other files are skipped).

    Args:
        paths: files and folders.
        dpi: PDF rendering resolution (dots per inch; 72 is the PDF's own unit size).

    Yields:
        One :class:`Page` per PDF page or image file.

    Raises:
        InvalidInputError: a path that does not exist, a file that is neither a PDF nor an
            image, an unreadable or encrypted PDF, or a bad ``dpi``.
    """
    if isinstance(dpi, bool) or not isinstance(dpi, int) or not 10 <= dpi <= 1200:
        raise InvalidInputError(f"dpi must be an integer in [10, 1200], got {dpi!r}")
    items = [paths] if isinstance(paths, (str, os.PathLike)) else list(paths)
    files = list(_files(items))  # every path is checked before the first page is rendered
    for path in files:
        if path.suffix.lower() in PDF_SUFFIXES:
            yield from _pdf_pages(path, dpi)
        else:
            data = path.read_bytes()
            yield Page(load_image(path), "", {"source": str(path)}, data, path.suffix.lower())


def _files(items: list[Any]) -> Iterator[Path]:
    known = IMAGE_SUFFIXES + PDF_SUFFIXES
    for item in items:
        if not isinstance(item, (str, os.PathLike)):
            raise InvalidInputError(f"paths must be str or Path, got {type(item).__name__}")
        path = Path(item)
        if path.is_dir():
            for found in sorted(p for p in path.rglob("*") if p.is_file()):
                if found.suffix.lower() in known:
                    yield found
        elif not path.is_file():
            raise InvalidInputError(f"{str(path)!r}: no such file or folder")
        elif path.suffix.lower() not in known:
            raise InvalidInputError(
                f"{str(path)!r} is neither a PDF nor an image ({', '.join(known)})"
            )
        else:
            yield path


def _pdf_pages(path: Path, dpi: int) -> Iterator[Page]:
    pdfium = _pdfium()
    try:
        pdf = pdfium.PdfDocument(str(path))
    except pdfium.PdfiumError as exc:
        raise InvalidInputError(f"{str(path)!r} is not a readable PDF: {exc}") from exc
    try:
        for number in range(len(pdf)):
            page = pdf[number]
            try:
                image = page.render(scale=dpi / 72).to_pil().convert("RGB")
                textpage = page.get_textpage()
                try:
                    text = textpage.get_text_range()
                finally:
                    textpage.close()
            finally:
                page.close()
            meta = {"source": str(path), "page": number + 1}
            yield Page(image, _clean(text), meta)
    finally:
        pdf.close()


def _clean(text: str) -> str:
    # pdfium ends lines with CRLF and may leave NULs or form feeds from the PDF's strings.
    text = text.replace("\r\n", "\n").replace("\r", "\n").replace("\x00", "")
    return "\n".join(line.rstrip() for line in text.split("\n")).strip()
