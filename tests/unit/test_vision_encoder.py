"""Vision retrievers (ColPali / ColQwen2): detection, loading, and vectors equal to transformers'.

The reference is transformers' own ``ColPaliForRetrieval`` / ``ColQwen2ForRetrieval`` and
processor loaded independently from the same folder, run one input at a time (no padding), so
the comparison also checks colmax's batching and padding removal.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from colmax.encoders import load_encoder
from colmax.errors import InvalidInputError, ModelLoadError
from colmax.vision.detect import read_vision_checkpoint

pytest.importorskip("PIL", reason='pip install "colmax[vision]"')
from PIL import Image

QUERIES = ["revenue growth", "what is the total of the sales table in the north region ?", "page"]


def _pages() -> list[Image.Image]:
    rng = np.random.default_rng(0)
    sizes = [(120, 160), (200, 100), (90, 90)]  # portrait, landscape, square
    return [Image.fromarray(rng.integers(0, 255, (h, w, 3), dtype=np.uint8)) for w, h in sizes]


def _reference(folder: Path, model_class: str, *, queries=(), images=()) -> list[torch.Tensor]:
    import transformers

    model = getattr(transformers, model_class).from_pretrained(folder).eval()
    processor = transformers.AutoProcessor.from_pretrained(folder)
    out = []
    with torch.inference_mode():
        for q in queries:
            batch = processor.process_queries(text=[q])
            out.append(model(**batch).embeddings[0])
        for im in images:
            batch = processor.process_images(images=[im])
            out.append(model(**batch).embeddings[0])
    return out


@pytest.mark.parametrize(
    ("fixture", "model_class"),
    [
        ("tiny_colpali_model", "ColPaliForRetrieval"),
        ("tiny_colqwen2_model", "ColQwen2ForRetrieval"),
    ],
    ids=["colpali", "colqwen2"],
)
def test_vectors_equal_transformers(fixture: str, model_class: str, request) -> None:
    folder = request.getfixturevalue(fixture)
    encoder = load_encoder(
        folder, batch_size=2, image_batch_size=2, dtype="float32"
    )  # batches with padding
    assert encoder.format == "colpali-hf" and encoder.dim == 16
    pages = _pages()
    expected = _reference(folder, model_class, queries=QUERIES, images=pages)
    got = encoder.encode_queries(QUERIES) + encoder.encode_images(pages)
    assert len(got) == len(expected)
    for g, e in zip(got, expected):
        assert g.dtype == torch.float32 and g.shape == e.shape  # same number of vectors
        torch.testing.assert_close(g, e.float(), atol=1e-4, rtol=0)


def test_colpali_patch_grid(colpali_encoder) -> None:
    page = colpali_encoder.encode_pages(_pages()[:1])[0]
    assert page.grid.shape == (8, 8)  # 64 x 64 pixels in patches of 8
    # ColPali puts the image tokens first, row-major: patch (r, c) is vector r * 8 + c.
    np.testing.assert_array_equal(page.grid.ravel(), np.arange(64))
    assert page.vectors.shape[0] > 64  # plus the visual prompt's tokens


def test_colqwen2_grid_follows_the_page_shape(tiny_colqwen2_model: Path) -> None:
    encoder = load_encoder(tiny_colqwen2_model)
    portrait, landscape, _ = encoder.encode_pages(_pages())
    assert portrait.grid.shape[0] > portrait.grid.shape[1]
    assert landscape.grid.shape[0] < landscape.grid.shape[1]
    for page in (portrait, landscape):
        rows = page.grid.ravel()
        assert len(set(rows.tolist())) == rows.size  # one vector per merged patch
        assert rows.max() < page.vectors.shape[0]
        assert np.all(np.diff(rows) == 1)  # image tokens are contiguous, row-major


def test_config_round_trip_gives_the_same_vectors(colpali_encoder) -> None:
    config = colpali_encoder.config()
    assert config["format"] == "colpali-hf"
    again = load_encoder(**config)
    a, b = colpali_encoder.encode_queries(QUERIES), again.encode_queries(QUERIES)
    for x, y in zip(a, b):
        torch.testing.assert_close(x, y)


def test_query_tokens_label_every_vector(colpali_encoder) -> None:
    tokens = colpali_encoder.query_tokens("revenue growth")
    assert len(tokens) == colpali_encoder.encode_queries(["revenue growth"])[0].shape[0]
    assert "revenue" in tokens and "growth" in tokens


def test_documents_are_images(colpali_encoder) -> None:
    with pytest.raises(InvalidInputError, match="page images"):
        colpali_encoder.encode_documents(["a text"])
    with pytest.raises(InvalidInputError, match="PIL images or image file paths"):
        colpali_encoder.encode_images([42])


def test_detection(
    tiny_colpali_model: Path, tiny_colqwen2_model: Path, tiny_hf_model: Path
) -> None:
    colpali = read_vision_checkpoint(tiny_colpali_model)
    assert (colpali.format, colpali.model_class, colpali.family) == (
        "colpali-hf", "ColPaliForRetrieval", "paligemma",
    )  # fmt: skip
    assert read_vision_checkpoint(tiny_colqwen2_model).family == "qwen2"
    assert read_vision_checkpoint(tiny_hf_model) is None  # a text model
    with pytest.raises(ModelLoadError, match="colpali-engine"):
        read_vision_checkpoint(tiny_colpali_model, "colpali-engine")


def test_colpali_engine_adapter_is_recognised(tmp_path: Path) -> None:
    # A LoRA adapter folder as colpali-engine publishes it (vidore/colqwen2-v1.0): no
    # config.json of its own, the processor class names the model class.
    (tmp_path / "adapter_config.json").write_text(
        '{"base_model_name_or_path": "vidore/colqwen2-base"}'
    )
    (tmp_path / "preprocessor_config.json").write_text(
        '{"processor_class": "ColQwen2_5_Processor"}'
    )
    found = read_vision_checkpoint(tmp_path)
    assert (found.format, found.model_class, found.family) == (
        "colpali-engine",
        "ColQwen2_5",
        "qwen2",
    )


def test_vision_settings_are_checked(tiny_colpali_model: Path) -> None:
    with pytest.raises(InvalidInputError, match="query_length"):
        load_encoder(tiny_colpali_model, query_length=32)
    with pytest.raises(InvalidInputError, match="batch_size"):
        load_encoder(tiny_colpali_model, batch_size=0)


def test_missing_weights_are_refused(tiny_colpali_model: Path, tmp_path: Path) -> None:
    broken = Path(shutil.copytree(tiny_colpali_model, tmp_path / "broken"))
    (broken / "model.safetensors").unlink()
    with pytest.raises(ModelLoadError):
        load_encoder(broken)


def test_bfloat16_runs_and_returns_float32(tiny_colpali_model: Path) -> None:
    exact = load_encoder(tiny_colpali_model, dtype="float32")
    half = load_encoder(tiny_colpali_model, dtype="bfloat16")
    assert half.dtype == torch.bfloat16 and half.config()["dtype"] == "bfloat16"
    a, b = exact.encode_queries(QUERIES[:1])[0], half.encode_queries(QUERIES[:1])[0]
    assert b.dtype == torch.float32 and a.shape == b.shape
    assert torch.nn.functional.cosine_similarity(a, b).min() > 0.95
    page = half.encode_pages(_pages()[:1])[0]
    assert page.vectors.dtype == torch.float32 and page.grid.shape == (8, 8)
