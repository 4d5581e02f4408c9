"""colmax's vision encoder against colpali-engine's own processor and model, same tiny weights.

A tiny random checkpoint is saved with colpali-engine's classes (``ColQwen2``, ``ColPali``) and
processors; colmax loads the folder (format detected as ``"colpali-engine"``) and its vectors
must equal colpali-engine's, input by input: same number of vectors (the rows the attention
mask keeps), each within 1e-4.

``scripts/install_colpali_engine.sh`` (run by ``.ci/run``, which then sets
``COLMAX_REQUIRE_COLPALI_ENGINE=1`` so a missing colpali-engine fails instead of skipping)
installs colpali-engine into the main environment without its torchvision dependency: PyPI's
torchvision wheels are CUDA builds whose operators do not load with the CPU torch used here.
colpali-engine imports one torchvision-only transformers module for a pure function,
``smart_resize``; :func:`_without_torchvision` provides it from transformers' Pillow twin of
that module (a copy of the same function). Its Qwen2-VL processors (ColQwen2) would also load
a video processor, which needs torchvision: both colmax and the reference then build the
processor from the folder's image processor and tokenizer without one
(:mod:`colmax.vision.processors`). Nothing colpali-engine computes is replaced.
"""

from __future__ import annotations

import importlib.util
import math
import os
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import torch


def _without_torchvision() -> None:
    if importlib.util.find_spec("torchvision") is not None:
        return
    from transformers.models.qwen2_vl import image_processing_pil_qwen2_vl as pil

    name = "transformers.models.qwen2_vl.image_processing_qwen2_vl"
    shim = types.ModuleType(name)
    shim.smart_resize = pil.smart_resize  # type: ignore[attr-defined]
    sys.modules.setdefault(name, shim)


_missing = [m for m in ("colpali_engine", "peft") if importlib.util.find_spec(m) is None]
if _missing and os.environ.get("COLMAX_REQUIRE_COLPALI_ENGINE") != "1":
    pytest.skip(
        f"{_missing} not installed: scripts/install_colpali_engine.sh", allow_module_level=True
    )
_without_torchvision()
import colpali_engine.models as engine_models  # noqa: E402
from PIL import Image  # noqa: E402

from colmax.encoders import load_encoder  # noqa: E402
from colmax.vision.processors import images_only, needs_images_only  # noqa: E402
from colmax.vision.tiny import make_tiny_colpali_engine  # noqa: E402

QUERIES = ["revenue growth", "what is the total of the sales table in the north region ?", "page"]


def _reference_processor(processor_class: type, folder: Path) -> object:
    """colpali-engine's processor for ``folder``. Without torchvision (this CPU build's case)
    its Qwen2-VL processors cannot load their video processor: the reference is then built from
    the folder's own image processor and tokenizer, loaded here by transformers, with only the
    video-processor class check skipped (colmax.vision.processors.images_only); the query and
    image processing that runs is colpali-engine's."""
    if not needs_images_only(processor_class):
        return processor_class.from_pretrained(folder)
    from transformers import AutoTokenizer, Qwen2VLImageProcessorPil

    return images_only(
        processor_class,
        Qwen2VLImageProcessorPil.from_pretrained(folder),
        AutoTokenizer.from_pretrained(folder),
    )


def _pages() -> list[Image.Image]:
    rng = np.random.default_rng(0)
    sizes = [(120, 160), (200, 100), (90, 90)]
    return [Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)) for w, h in sizes]


@pytest.mark.parametrize("model_class", ["ColQwen2", "ColPali", "ColIdefics3"])
def test_vectors_equal_colpali_engine(model_class: str, tmp_path: Path) -> None:
    folder = make_tiny_colpali_engine(tmp_path / model_class, model_class=model_class)
    encoder = load_encoder(
        folder, batch_size=2, image_batch_size=2, dtype="float32"
    )  # padded batches
    assert encoder.format == "colpali-engine" and encoder.dim == 128

    model = getattr(engine_models, model_class).from_pretrained(folder, device_map="cpu").eval()
    processor = _reference_processor(getattr(engine_models, f"{model_class}Processor"), folder)
    expected = []
    with torch.inference_mode():
        for q in QUERIES:  # one at a time: no padding in the reference
            batch = processor.process_queries([q])
            expected.append(model(**batch)[0][batch["attention_mask"][0].bool()])
        for page in _pages():
            batch = processor.process_images([page])
            expected.append(model(**batch)[0][batch["attention_mask"][0].bool()])
    got = encoder.encode_queries(QUERIES) + encoder.encode_images(_pages())
    for g, e in zip(got, expected, strict=True):
        assert g.shape == e.shape  # same number of vectors
        torch.testing.assert_close(g, e.float(), atol=1e-4, rtol=0)
    grid = encoder.encode_pages(_pages()[:1])[0].grid
    assert grid is not None and grid.size > 0


def test_tiled_pages_get_a_grid_of_their_tiles(tmp_path: Path) -> None:
    """ColSmol / ColIdefics3 cut a page into rows x cols tiles plus a global image. The grid is
    the tiles side by side, each tile's tokens row-major, in the order the processor emits
    the tiles; the global image's vectors are not placed on the page."""
    folder = make_tiny_colpali_engine(tmp_path / "ColIdefics3", model_class="ColIdefics3")
    encoder = load_encoder(folder, image_batch_size=2, dtype="float32")
    processor = _reference_processor(engine_models.ColIdefics3Processor, folder)
    side = math.isqrt(processor.image_seq_len)
    for page, encoded in zip(_pages(), encoder.encode_pages(_pages()), strict=True):
        info = processor.image_processor(
            [page.convert("RGB")], return_row_col_info=True, return_tensors="pt"
        )
        n_rows, n_cols = int(info["rows"][0][0]), int(info["cols"][0][0])
        assert n_rows * n_cols > 1, "the test pages must be cut into tiles"
        grid = encoded.grid
        assert grid is not None and grid.shape == (n_rows * side, n_cols * side)
        tiles = [
            grid[r * side : (r + 1) * side, c * side : (c + 1) * side].ravel()
            for r in range(n_rows)
            for c in range(n_cols)
        ]
        flat = np.concatenate(tiles)
        # Each tile a run of consecutive vector rows, tiles in the processor's order...
        assert (np.diff(flat) > 0).all() and all((np.diff(t) == 1).all() for t in tiles)
        # ...and the global image's run (the last image tokens) left out.
        assert len(encoded.vectors) > flat.max() + processor.image_seq_len


def test_tiled_page_heatmap(tmp_path: Path) -> None:
    from colmax import Engine

    folder = make_tiny_colpali_engine(tmp_path / "ColIdefics3", model_class="ColIdefics3")
    engine = Engine.from_pretrained(folder, path=tmp_path / "idx", dtype="float32")
    engine.add(images=_pages(), ids=["a", "b", "c"])
    hit = engine.search("revenue growth", k=1, explain=True)[0]
    out = hit.explanation.to_image(tmp_path / "why.png")
    with Image.open(out) as drawn:
        assert drawn.size == engine.page_image(hit.id).size
    engine.close()
