"""Pages through the engine: PDFs and images in, page hits with text, image and heatmap out."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from colmax import Engine
from colmax.errors import InvalidInputError, NoEncoderError, UnknownIdError

pytest.importorskip("pypdfium2", reason='pip install "colmax[vision]"')
from PIL import Image

from colmax.vision.tiny import SAMPLE_PAGES as PDF_PAGES

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture()
def pages_engine(colpali_encoder, text_pdf: Path, tmp_path: Path) -> Engine:
    engine = Engine(colpali_encoder, path=tmp_path / "idx")
    engine.add_files([text_pdf], dpi=40)
    return engine


def test_done_when(tiny_colpali_model: Path, text_pdf: Path, tmp_path: Path) -> None:
    """The issue's done-when, end to end on a 3-page PDF with a text layer."""
    engine = Engine.from_pretrained(tiny_colpali_model, path=tmp_path / "idx")
    ids = engine.add_files([text_pdf], dpi=40)
    assert len(engine) == 3 and ids == [f"{text_pdf}#page={n}" for n in (1, 2, 3)]
    hits = engine.search("revenue growth", k=3, explain=True)
    assert sorted(h.metadata["page"] for h in hits) == [1, 2, 3]
    for hit in hits:
        assert hit.metadata["source"] == str(text_pdf)
        assert hit.text == PDF_PAGES[hit.metadata["page"] - 1]  # the page's text layer
        out = hit.explanation.to_image(tmp_path / f"why-{hit.rank}.png")
        assert out.read_bytes()[:8] == PNG
        with Image.open(out) as drawn:
            assert drawn.size == engine.page_image(hit.id).size
        assert hit.explanation.score == pytest.approx(hit.score, abs=1e-2)  # fp16 storage
    reopened = Engine.load(tmp_path / "idx")
    again = reopened.search("revenue growth", k=3)
    assert [h.id for h in again] == [h.id for h in hits]
    np.testing.assert_allclose([h.score for h in again], [h.score for h in hits], atol=1e-5)
    reopened.close()


def test_page_images_are_stored_as_rendered(pages_engine: Engine, text_pdf: Path) -> None:
    from colmax.vision.pages import read_pages

    rendered = [p.image for p in read_pages(text_pdf, dpi=40)]
    for page, id_ in zip(rendered, pages_engine.ids()):
        np.testing.assert_array_equal(np.asarray(pages_engine.page_image(id_)), np.asarray(page))
        data, mime = pages_engine.page_image_bytes(id_)
        assert mime == "image/png" and data[:8] == PNG


def test_heatmap_marks_the_matched_patches(pages_engine: Engine, tmp_path: Path) -> None:
    hit = pages_engine.search("revenue growth", k=1, explain=True)[0]
    page = hit.explanation.page
    assert page.grid.shape == (8, 8)
    matched = page.matched_patches()
    assert len(matched) == len(hit.explanation.matches)
    # Every query vector's MaxSim term is its best similarity; the patch grid locates it.
    vectors = pages_engine.backend.get_vectors([hit.id])[0]
    for m, patches in zip(hit.explanation.matches, matched):
        assert all(page.grid[r, c] == m.doc_position for r, c in patches)
        assert page.similarity[m.query_position, m.doc_position] == pytest.approx(
            m.similarity, abs=1e-5
        )
    assert page.similarity.shape == (len(hit.explanation.matches), len(vectors))
    one = hit.explanation.to_image(tmp_path / "token.png", token=3)
    assert one.read_bytes()[:8] == PNG
    with pytest.raises(InvalidInputError, match="query position"):
        hit.explanation.to_image(tmp_path / "bad.png", token=999)
    assert hit.explanation.to_dict()["page"]["grid"] == [8, 8]


def test_explain_by_id_has_the_page(pages_engine: Engine, tmp_path: Path) -> None:
    e = pages_engine.explain("sales table", pages_engine.ids()[1])
    assert e.page is not None and e.to_image(tmp_path / "e.png").is_file()


def test_pooling_keeps_a_third_and_the_heatmap(
    colpali_encoder, text_pdf: Path, tmp_path: Path
) -> None:
    full = Engine(colpali_encoder)
    full.add_files([text_pdf], dpi=40)
    pooled = Engine(colpali_encoder)
    pooled.add_files([text_pdf], dpi=40, pool_factor=3)
    n_full = full.backend.get_vectors(full.ids()[:1])[0].shape[0]
    n_pooled = pooled.backend.get_vectors(pooled.ids()[:1])[0].shape[0]
    assert n_pooled == -(-n_full // 3)
    hit = pooled.search("profit chart", k=1, explain=True)[0]
    grid = hit.explanation.page.grid
    assert grid.max() < n_pooled and len(np.unique(grid)) < grid.size  # patches share means
    assert hit.explanation.to_image(tmp_path / "pooled.png").is_file()


def test_images_in_memory_and_paths(colpali_encoder, tmp_path: Path) -> None:
    engine = Engine(colpali_encoder)
    scan = tmp_path / "scan.jpg"
    Image.new("RGB", (80, 120), (200, 30, 30)).save(scan, quality=90)
    ids = engine.add(images=[Image.new("RGB", (60, 60), "white"), scan], documents=["blank", ""])
    assert ids[1] == str(scan) and len(ids[0]) == 32  # a path keeps its name, a PIL image a UUID
    assert engine.get([ids[0]])[0].text == "blank"
    data, mime = engine.page_image_bytes(ids[1])
    assert mime == "image/jpeg" and data == scan.read_bytes()  # stored as given, not re-encoded
    hits = engine.search("page", k=2, explain=True)
    assert all(h.explanation.page is not None for h in hits)
    saved = engine.save(tmp_path / "saved")
    reopened = Engine.load(saved)
    assert reopened.page_image_bytes(ids[1])[0] == data


def test_wrong_model_or_input(colpali_encoder, tiny_colbert_model: Path, tmp_path: Path) -> None:
    text_engine = Engine.from_pretrained(tiny_colbert_model)
    with pytest.raises(NoEncoderError, match="vision retriever"):
        text_engine.add_files([tmp_path])
    text_engine.add(["a text document"], ids=["t"])
    with pytest.raises(InvalidInputError, match="no page image"):
        text_engine.page_image("t")
    e = text_engine.search("text", k=1, explain=True)[0].explanation
    with pytest.raises(InvalidInputError, match="draws page images"):
        e.to_image(tmp_path / "no.png")
    engine = Engine(colpali_encoder)
    with pytest.raises(InvalidInputError, match="page images"):
        engine.add(["just text"])
    with pytest.raises(UnknownIdError):
        engine.page_image("nope")
    with pytest.raises(InvalidInputError, match="no such file"):
        engine.add_files([tmp_path / "missing.pdf"])
    (tmp_path / "notes.txt").write_text("x")
    with pytest.raises(InvalidInputError, match="neither a PDF nor an image"):
        engine.add_files([tmp_path / "notes.txt"])
    (tmp_path / "broken.pdf").write_bytes(b"%PDF-1.4 not really")
    with pytest.raises(InvalidInputError, match="not a readable PDF"):
        engine.add_files([tmp_path / "broken.pdf"])
    assert len(engine) == 0


def test_folder_of_files_and_reindexing(colpali_encoder, text_pdf: Path, tmp_path: Path) -> None:
    folder = tmp_path / "docs"
    (folder / "sub").mkdir(parents=True)
    shutil.copy(text_pdf, folder / "sub" / "report.pdf")
    Image.new("RGB", (50, 70), "white").save(folder / "cover.png")
    (folder / "readme.txt").write_text("skipped")
    engine = Engine(colpali_encoder, path=tmp_path / "idx")
    ids = engine.add_files([folder], dpi=30, metadata={"batch": "q3"}, commit_every=2)
    assert ids == [str(folder / "cover.png")] + [
        f"{folder / 'sub' / 'report.pdf'}#page={n}" for n in (1, 2, 3)
    ]
    assert all(engine.get([i])[0].metadata["batch"] == "q3" for i in ids)
    assert engine.add_files([folder], dpi=30) == ids and len(engine) == 4  # upsert by id


@pytest.mark.parametrize("bad", [0, 2.5, "2", True])
def test_commit_every_must_be_a_positive_integer(
    colpali_encoder, text_pdf: Path, tmp_path: Path, bad: object
) -> None:
    """Refused before any page is read or written (2.5 used to reach itertools.islice)."""
    engine = Engine(colpali_encoder, path=tmp_path / "idx")
    with pytest.raises(InvalidInputError, match="commit_every must be a positive integer"):
        engine.add_files([text_pdf], dpi=30, commit_every=bad)  # type: ignore[arg-type]
    assert len(engine) == 0


def test_deleted_pages_lose_their_files(pages_engine: Engine, monkeypatch) -> None:
    store = pages_engine._pages.folder
    before = {p.name for p in store.iterdir()}
    past = time.time() - 3600
    for path in store.iterdir():  # older than the grace period
        os.utime(path, (past, past))
    pages_engine.delete(pages_engine.ids()[:1])
    after = {p.name for p in store.iterdir()}
    assert len(after) == len(before) - 1  # its image; the shared grid stays
    for id_ in pages_engine.ids():
        pages_engine.page_image(id_)  # the others are intact


def test_deleted_pages_lose_their_images_in_memory_too(colpali_encoder, text_pdf: Path) -> None:
    engine = Engine(colpali_encoder)  # no folder: images live in the engine's memory
    engine.add_files([text_pdf], dpi=40)
    store = engine._pages
    before = store.names()
    engine.delete(engine.ids()[:1])
    assert store.names() == before  # younger than the grace period: maybe not committed yet
    past = time.time() - 3600
    store._stored_at = dict.fromkeys(store._stored_at, past)  # as os.utime on disk
    engine.delete(engine.ids()[:1])
    assert len(store.names()) == len(before) - 2  # both deleted pages' images
    for id_ in engine.ids():
        engine.page_image(id_)  # the other is intact
    orphan = store.put(b"not committed yet", ".png")
    engine.delete(engine.ids())
    assert store.names() == {orphan}  # young: kept until the grace period has passed


def test_uncommitted_files_survive_a_young_collection(pages_engine: Engine) -> None:
    from colmax.vision.engine_pages import collect_garbage

    orphan = pages_engine._pages.put(b"not committed yet", ".png")
    assert collect_garbage(pages_engine.backend, pages_engine._pages) == 0
    assert (pages_engine._pages.folder / orphan).is_file()
    assert collect_garbage(pages_engine.backend, pages_engine._pages, grace_seconds=-1) == 1
    assert not (pages_engine._pages.folder / orphan).exists()


@pytest.mark.parametrize("index", ["plaid", "qdrant"])
def test_pages_on_other_backends(
    index: str, colpali_encoder, text_pdf: Path, tmp_path: Path
) -> None:
    if index == "qdrant":
        pytest.importorskip("qdrant_edge", reason='pip install "colmax[qdrant]"')
    engine = Engine(colpali_encoder, index=index, path=tmp_path / index)
    ids = engine.add_files([text_pdf], dpi=30, pool_factor=3)
    hits = engine.search("sales table", k=3, explain=True)
    assert sorted(h.id for h in hits) == sorted(ids)
    assert hits[0].explanation.to_image(tmp_path / "w.png").read_bytes()[:8] == PNG
    engine.close()
    reopened = Engine.load(tmp_path / index)
    assert [h.id for h in reopened.search("sales table", k=3)] == [h.id for h in hits]
    assert reopened.page_image(ids[0]).size == engine_page_size(text_pdf)
    reopened.close()


def engine_page_size(pdf: Path) -> tuple[int, int]:
    from colmax.vision.pages import read_pages

    return next(iter(read_pages(pdf, dpi=30))).image.size
