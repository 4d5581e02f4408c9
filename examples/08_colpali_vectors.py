"""Index page images as multi-vectors (ColPali-style) and search them with text queries, offline.

A ColPali model turns a page *image* into one vector per image patch (plus a few prompt tokens),
and a text query into one vector per token, in the same space; MaxSim compares them exactly as
for text. colmax does not run the vision model itself: any code that produces the vectors hands
them to ``Engine.add(embeddings=...)`` with the page's text (OCR, caption, file name) as
payload, and searches with ``Engine.search(query_embeddings=...)``.

To run offline, this script builds a *tiny random* ColPali (transformers'
``ColPaliForRetrieval``: SigLIP vision tower + Gemma decoder + projection) from a config, with a
word-level tokenizer made on the spot. Its rankings are meaningless; the shapes, the calls and
the flow are those of a real checkpoint. With a real one, replace :func:`build_tiny_colpali` by::

    model = ColPaliForRetrieval.from_pretrained("vidore/colpali-v1.3-hf").eval()
    processor = ColPaliProcessor.from_pretrained("vidore/colpali-v1.3-hf")

Run from the repository root::

    .venv/bin/python examples/08_colpali_vectors.py
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageDraw
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers
from transformers import (
    ColPaliConfig,
    ColPaliForRetrieval,
    ColPaliProcessor,
    GemmaConfig,
    PaliGemmaConfig,
    PreTrainedTokenizerFast,
    SiglipImageProcessorPil,
    SiglipVisionConfig,
)

from colmax import Engine

WORDS = "question describe the image invoice revenue chart table total page sales 2024 . :".split()  # noqa: SIM905
PAGES = {
    "invoice": ("Invoice no. 17, total 420 EUR", (240, 240, 255)),
    "chart": ("Revenue chart 2024", (255, 230, 200)),
    "table": ("Sales table by region", (210, 255, 210)),
}
IMAGE_SIZE, PATCH = 32, 8  # 16 patches per page


def build_tiny_colpali(seed: int = 0) -> tuple[ColPaliForRetrieval, ColPaliProcessor]:
    """A random ColPali small enough for a laptop CPU, and its processor."""
    vocab = ["<pad>", "<unk>", "<bos>", "<eos>", *WORDS]
    backend = Tokenizer(models.WordLevel({w: i for i, w in enumerate(vocab)}, unk_token="<unk>"))
    backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        unk_token="<unk>",
    )
    images = SiglipImageProcessorPil(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    images.image_seq_length = (IMAGE_SIZE // PATCH) ** 2
    processor = ColPaliProcessor(image_processor=images, tokenizer=tokenizer)  # adds <image>
    vision = SiglipVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
        image_size=IMAGE_SIZE, patch_size=PATCH, vision_use_head=False,
    )  # fmt: skip
    text = GemmaConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
        num_key_value_heads=1, head_dim=16, vocab_size=len(tokenizer),
    )  # fmt: skip
    vlm = PaliGemmaConfig(
        vision_config=vision, text_config=text, image_token_index=processor.image_token_id,
        vocab_size=len(tokenizer), projection_dim=32, hidden_size=32,
    )  # fmt: skip
    torch.manual_seed(seed)
    model = ColPaliForRetrieval(ColPaliConfig(vlm_config=vlm, embedding_dim=24)).eval()
    return model, processor


def render_page(title: str, color: tuple[int, int, int]) -> Image.Image:
    """A synthetic page: a coloured sheet with a title and a few ruled lines."""
    page = Image.new("RGB", (96, 128), color)
    draw = ImageDraw.Draw(page)
    draw.text((6, 6), title, fill=(0, 0, 0))
    for y in range(30, 120, 12):
        draw.line((6, y, 90, y), fill=(90, 90, 90), width=1 + len(title) % 3)
    return page


@torch.inference_mode()
def embed(model: ColPaliForRetrieval, batch: dict) -> list[np.ndarray]:
    """One ``(n_tokens, dim)`` array per input, padding rows dropped.

    ColPali zeroes padded positions; colmax refuses zero vectors (no direction), so only the
    rows the attention mask keeps are indexed or used as query vectors.
    """
    inputs = {k: batch[k] for k in ("input_ids", "attention_mask", "pixel_values") if k in batch}
    out = model(**inputs).embeddings.float()
    mask = batch["attention_mask"].bool()
    return [row[keep].numpy() for row, keep in zip(out, mask)]


def main() -> None:
    model, processor = build_tiny_colpali()
    ids = list(PAGES)
    pages = [render_page(*PAGES[i]) for i in ids]
    page_vectors = embed(model, processor.process_images(pages))
    print(f"{len(pages)} pages -> vectors {[v.shape for v in page_vectors]}")

    engine = Engine(dim=model.embedding_dim)  # no text encoder: precomputed vectors only
    engine.add(
        embeddings=page_vectors,
        documents=[PAGES[i][0] for i in ids],  # payload returned with hits (OCR text, caption)
        metadatas=[{"kind": "page", "file": f"{i}.png"} for i in ids],
        ids=ids,
    )
    queries = ["total of the invoice", "revenue chart"]
    for query, q in zip(queries, embed(model, processor.process_queries(queries))):
        hits = engine.search(query_embeddings=q, k=2)
        print(f"Q: {query!r} ({q.shape[0]} vectors)")
        for hit in hits:
            print(f"  {hit.rank + 1}. {hit.id:8s} score={hit.score:6.3f} {hit.metadata}")

    # A page's own vectors as the query find that page first, with the largest possible score
    # (every vector matches itself: score = number of vectors).
    best = engine.search(query_embeddings=page_vectors[1], k=1)[0]
    print(f"self-search: {best.id} score={best.score:.3f} of {page_vectors[1].shape[0]}")


if __name__ == "__main__":
    main()
