"""Search the pages of a PDF with a text query, and see which patches of the page matched.

A vision retriever (ColPali, ColQwen) embeds each page *image* as one vector per patch and the
query as one vector per token; colmax renders the PDF page by page, keeps each page's text
layer as the hit's text (for the LLM) and the page image in the index (for the user), and draws
a heatmap of the matched patches.

To run offline, this script saves a *tiny random* ColPali (transformers'
``ColPaliForRetrieval`` + processor, built from a config) and writes a 3-page PDF with a real
text layer. The random model's rankings mean nothing; every call is the one you make with a
real checkpoint. With a real model, replace the first lines of :func:`main` by::

    engine = Engine.from_pretrained("vidore/colqwen2-v1.0-hf", path="pages")  # or colpali-v1.3-hf
    engine.add_files(["report.pdf", "scans/"], pool_factor=3)

Run from the repository root (needs ``colmax[vision]``)::

    .venv/bin/python examples/10_pdf_pages.py
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from colmax import Engine
from colmax.vision.tiny import SAMPLE_PAGES, make_tiny_colpali, write_text_pdf


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="colmax-pdf-"))
    model = make_tiny_colpali(work / "tiny-colpali")  # a checkpoint saved with save_pretrained
    pdf = write_text_pdf(work / "report.pdf", list(SAMPLE_PAGES))

    engine = Engine.from_pretrained(model, path=work / "index")
    ids = engine.add_files([pdf], dpi=72, pool_factor=3)  # a third of the patch vectors
    print(f"indexed {len(ids)} pages: {ids[0].rsplit('/', 1)[-1]}, ...")

    hits = engine.search("sales table by region", k=3, explain=True)
    for hit in hits:
        first_line = hit.text.splitlines()[0]
        print(f"  {hit.rank + 1}. page {hit.metadata['page']} score={hit.score:.3f} {first_line!r}")

    best = hits[0]
    heatmap = best.explanation.to_image(work / "why.png")  # the page, matched patches outlined
    page = engine.page_image(best.id)  # the stored page image (PIL), e.g. for a chat UI
    print(f"page image {page.size[0]}x{page.size[1]}, heatmap written to {heatmap}")

    # The index folder reopens with the same model and gives the same ranking.
    engine.close()
    with Engine.load(work / "index") as again:
        same = [h.id for h in again.search("sales table by region", k=3)] == [h.id for h in hits]
        print(f"reopened: same ranking = {same}")


if __name__ == "__main__":
    main()
