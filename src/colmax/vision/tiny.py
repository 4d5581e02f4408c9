"""Tiny *random* vision retrievers saved as real checkpoints, for tests, demos and examples.

No vision weights can be downloaded in tests or on an offline laptop, so these builders make a
ColPali (transformers' ``ColPaliForRetrieval``: SigLIP tower + Gemma decoder + projection) and a
ColQwen2 (``ColQwen2ForRetrieval``: Qwen2-VL) from small configs, with a word-level tokenizer
made on the spot, and save model and processor with ``save_pretrained``: the same files a
published "-hf" checkpoint has. Their rankings are meaningless; shapes, files and code paths are
those of the real models. A build takes well under a second.

Examples:
    >>> import tempfile
    >>> from colmax.vision.tiny import make_tiny_colpali
    >>> folder = make_tiny_colpali(tempfile.mkdtemp())  # doctest: +SKIP
    >>> engine = Engine.from_pretrained(folder, path="pages")  # doctest: +SKIP
"""

from __future__ import annotations

import string
from pathlib import Path
from typing import Any

import torch

__all__ = [
    "SAMPLE_PAGES",
    "TINY_WORDS",
    "make_tiny_colpali",
    "make_tiny_colpali_engine",
    "make_tiny_colqwen2",
    "write_text_pdf",
]

#: Texts of a small sample report, one per page, for :func:`write_text_pdf` in tests and demos.
SAMPLE_PAGES = (
    "Annual report 2023\nRevenue growth by region",
    "Second page\nSales table: north, south",
    "Third page\nProfit chart and summary",
)

#: The words the tiny tokenizers know (lower-cased input); anything else is ``<unk>``.
TINY_WORDS: tuple[str, ...] = tuple(
    (  # noqa: SIM905 (a word list reads better as prose)
        "the a of and to in is for on with by at it this that what which how page report "
        "revenue growth region table figure chart text query question describe image user "
        "invoice total sales year north south east west profit cost summary annual results "
        "colmax late interaction search document pdf first second third"
    ).split()
) + tuple(string.ascii_lowercase + string.digits + string.punctuation)


def _tokenizer(specials: list[str], **roles: Any) -> Any:
    from tokenizers import AddedToken, Tokenizer, models, normalizers, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {w: i for i, w in enumerate(dict.fromkeys([*specials, *TINY_WORDS]))}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.normalizer = normalizers.Lowercase()
    backend.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation()]
    )
    backend.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", **roles)


def make_tiny_colpali(
    folder: str | Path, *, seed: int = 0, image_size: int = 64, patch_size: int = 8, dim: int = 16
) -> Path:
    """Save a tiny random ``ColPaliForRetrieval`` and its ``ColPaliProcessor`` to ``folder``.

    Args:
        folder: where to save (created).
        seed: torch seed of the random weights.
        image_size: pages are resized to ``image_size`` squared pixels...
        patch_size: ...cut into ``(image_size // patch_size) ** 2`` patches (64 by default).
        dim: vector dimension.

    Returns:
        The folder, which ``Engine.from_pretrained`` opens like ``vidore/colpali-v1.3-hf``.
    """
    from transformers import ColPaliConfig, ColPaliForRetrieval, ColPaliProcessor

    tokenizer, images, vlm = _paligemma_parts(image_size, patch_size)
    processor = ColPaliProcessor(image_processor=images, tokenizer=tokenizer)
    torch.manual_seed(seed)
    model = ColPaliForRetrieval(ColPaliConfig(vlm_config=vlm, embedding_dim=dim)).eval()
    return _save(folder, model, processor)


def make_tiny_colqwen2(folder: str | Path, *, seed: int = 0, dim: int = 16) -> Path:
    """Save a tiny random ``ColQwen2ForRetrieval`` and its ``ColQwen2Processor`` to ``folder``.

    Pages keep their aspect ratio: the Qwen2-VL image processor resizes them to between 4 and
    64 merged patches of 28 x 28 pixels (a real ColQwen2 allows up to 768).

    Args:
        folder: where to save (created).
        seed: torch seed of the random weights.
        dim: vector dimension.

    Returns:
        The folder, which ``Engine.from_pretrained`` opens like ``vidore/colqwen2-v1.0-hf``.
    """
    from transformers import ColQwen2Config, ColQwen2ForRetrieval, ColQwen2Processor

    tokenizer, images, vlm = _qwen2_parts()
    processor = ColQwen2Processor(image_processor=images, tokenizer=tokenizer)
    torch.manual_seed(seed)
    model = ColQwen2ForRetrieval(ColQwen2Config(vlm_config=vlm, embedding_dim=dim)).eval()
    return _save(folder, model, processor)


def make_tiny_colpali_engine(
    folder: str | Path, *, model_class: str = "ColQwen2", seed: int = 0
) -> Path:
    """Save a tiny random colpali-engine checkpoint (``ColQwen2``, ``ColPali`` or
    ``ColIdefics3``, the ColSmol architecture; dim 128 as colpali-engine fixes it) with
    colpali-engine's own processor. Needs colpali-engine.

    The backbone configs, tokenizer and image processor are those of :func:`make_tiny_colqwen2`
    and :func:`make_tiny_colpali`; the model and processor classes are colpali-engine's.
    """
    import colpali_engine.models as engine_models

    from colmax.vision.processors import images_only, needs_images_only

    if model_class == "ColQwen2":
        tokenizer, images, vlm = _qwen2_parts()
    elif model_class == "ColPali":
        tokenizer, images, vlm = _paligemma_parts(64, 8)
    elif model_class == "ColIdefics3":
        tokenizer, images, vlm = _idefics3_parts()
    else:
        raise ValueError(
            f"model_class must be ColQwen2, ColPali or ColIdefics3, got {model_class!r}"
        )
    processor_class = getattr(engine_models, f"{model_class}Processor")
    extra = {"image_seq_len": _IDEFICS3_SEQ_LEN} if model_class == "ColIdefics3" else {}
    if needs_images_only(processor_class):
        processor = images_only(processor_class, images, tokenizer)
    else:
        processor = processor_class(image_processor=images, tokenizer=tokenizer, **extra)
    torch.manual_seed(seed)
    model = getattr(engine_models, model_class)(vlm).eval()
    return _save(folder, model, processor)


def _paligemma_parts(image_size: int, patch_size: int) -> tuple[Any, Any, Any]:
    from transformers import (
        GemmaConfig,
        PaliGemmaConfig,
        SiglipImageProcessorPil,
        SiglipVisionConfig,
    )

    tokenizer = _tokenizer(
        ["<pad>", "<eos>", "<bos>", "<unk>", "<image>"],
        bos_token="<bos>",
        eos_token="<eos>",
        pad_token="<pad>",
        extra_special_tokens={"image_token": "<image>"},
    )
    images = SiglipImageProcessorPil(
        size={"height": image_size, "width": image_size},
        image_mean=[0.5, 0.5, 0.5],
        image_std=[0.5, 0.5, 0.5],
    )
    images.image_seq_length = (image_size // patch_size) ** 2  # type: ignore[attr-defined]
    vision = SiglipVisionConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2,
        image_size=image_size, patch_size=patch_size, vision_use_head=False,
    )  # fmt: skip
    text = GemmaConfig(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2,
        num_key_value_heads=1, head_dim=16, vocab_size=len(tokenizer),
        bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )  # fmt: skip
    vlm = PaliGemmaConfig(
        vision_config=vision, text_config=text,
        image_token_index=tokenizer.convert_tokens_to_ids("<image>"),
        vocab_size=len(tokenizer), projection_dim=32, hidden_size=32,
    )  # fmt: skip
    return tokenizer, images, vlm


#: Idefics3 tiles of 32 pixels, 8-pixel patches, pixel shuffle by 2: 2 x 2 tokens per tile.
_IDEFICS3_SEQ_LEN = 4


def _idefics3_parts() -> tuple[Any, Any, Any]:
    """A page larger than one 32-pixel tile is cut into rows x cols tiles plus a global image
    (as ColSmol cuts pages into 512-pixel tiles)."""
    from transformers import Idefics3Config, Idefics3ImageProcessorPil

    specials = ["<|endoftext|>", "<unk>", "<|im_start|>", "<end_of_utterance>", "<image>"]
    specials += ["<fake_token_around_image>", "<global-img>"]
    specials += [f"<row_{i}_col_{j}>" for i in range(1, 7) for j in range(1, 7)]
    tokenizer = _tokenizer(
        specials,
        bos_token="<|im_start|>",
        eos_token="<end_of_utterance>",
        pad_token="<|endoftext|>",
        extra_special_tokens={"image_token": "<image>"},
    )
    images = Idefics3ImageProcessorPil(
        size={"longest_edge": 64}, max_image_size={"longest_edge": 32}, do_image_splitting=True
    )
    vlm = Idefics3Config(
        text_config={
            "model_type": "llama", "hidden_size": 32, "intermediate_size": 64,
            "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1,
            "vocab_size": len(tokenizer), "pad_token_id": tokenizer.pad_token_id,
            "bos_token_id": tokenizer.bos_token_id, "eos_token_id": tokenizer.eos_token_id,
        },
        vision_config={
            "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 1,
            "num_attention_heads": 2, "image_size": 32, "patch_size": 8,
        },
        scale_factor=2, image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
    )  # fmt: skip
    return tokenizer, images, vlm


def _qwen2_parts() -> tuple[Any, Any, Any]:
    from transformers import Qwen2VLConfig, Qwen2VLImageProcessorPil

    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<|vision_start|>"]
    specials += ["<|vision_end|>", "<|image_pad|>", "<|video_pad|>", "<unk>"]
    tokenizer = _tokenizer(
        specials,
        eos_token="<|endoftext|>",
        pad_token="<|endoftext|>",
        extra_special_tokens={"image_token": "<|image_pad|>", "video_token": "<|video_pad|>"},
    )
    images = Qwen2VLImageProcessorPil(
        min_pixels=4 * 28 * 28, max_pixels=64 * 28 * 28, patch_size=14, merge_size=2,
        temporal_patch_size=2,
    )  # fmt: skip
    ids = tokenizer.convert_tokens_to_ids
    vlm = Qwen2VLConfig(
        text_config={
            "hidden_size": 32, "intermediate_size": 64, "num_hidden_layers": 2,
            "num_attention_heads": 2, "num_key_value_heads": 1, "vocab_size": len(tokenizer),
            "rope_scaling": {"type": "mrope", "mrope_section": [2, 3, 3]},
            "bos_token_id": None, "eos_token_id": tokenizer.eos_token_id,
            "pad_token_id": tokenizer.pad_token_id,
        },
        vision_config={
            "depth": 1, "embed_dim": 32, "hidden_size": 32, "num_heads": 2, "mlp_ratio": 2,
            "patch_size": 14, "spatial_merge_size": 2, "temporal_patch_size": 2,
        },
        image_token_id=ids("<|image_pad|>"), video_token_id=ids("<|video_pad|>"),
        vision_start_token_id=ids("<|vision_start|>"), vision_end_token_id=ids("<|vision_end|>"),
    )  # fmt: skip
    return tokenizer, images, vlm


def _save(folder: str | Path, model: Any, processor: Any) -> Path:
    from transformers.utils import logging as hf_logging

    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        model.save_pretrained(out)
        if getattr(processor, "video_processor", "") is None:
            # An images-only processor (no torchvision, see colmax.vision.processors) cannot
            # save itself; its parts are what a colpali-engine checkpoint holds.
            processor.image_processor.save_pretrained(out)
            processor.tokenizer.save_pretrained(out)
        else:
            processor.save_pretrained(out)
    finally:
        if bars:
            hf_logging.enable_progress_bar()
    return out


def write_text_pdf(
    path: str | Path, pages: list[str], *, size: tuple[int, int] = (612, 792)
) -> Path:
    """Write a PDF whose pages show ``pages`` as real text (a text layer, Helvetica), each
    with a coloured box that differs per page: a test and demo input needing no PDF library.

    Args:
        path: the file to write.
        pages: one text per page; ``"\\n"`` starts a new line.
        size: page width and height in points (72 per inch; US letter by default).

    Returns:
        The path.
    """
    width, height = size
    objects = ["<< /Type /Catalog /Pages 2 0 R >>", ""]  # the page tree is filled in below
    font = 3
    objects.append("<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>")
    kids = []
    for i, text in enumerate(pages):
        lines = [_pdf_string(line) for line in text.split("\n")]
        shade = [(0.9, 0.6, 0.5), (0.5, 0.8, 0.6), (0.5, 0.6, 0.9)][i % 3]
        box = (
            f"{shade[0]} {shade[1]} {shade[2]} rg 72 {height // 8} {width - 144} {height // 3} re f"
        )
        body = " T* ".join(f"({line}) Tj" for line in lines)
        stream = f"{box} 0 0 0 rg BT /F1 28 Tf 34 TL 72 {height - 108} Td {body} ET"
        objects.append(
            f"<< /Length {len(stream.encode('latin-1'))} >>\nstream\n{stream}\nendstream"
        )
        content = len(objects)
        objects.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {width} {height}] "
            f"/Resources << /Font << /F1 {font} 0 R >> >> /Contents {content} 0 R >>"
        )
        kids.append(f"{len(objects)} 0 R")
    objects[1] = f"<< /Type /Pages /Kids [{' '.join(kids)}] /Count {len(kids)} >>"
    out = bytearray(b"%PDF-1.4\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n{body}\nendobj\n".encode("latin-1")
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode("latin-1")
    out += "".join(f"{o:010d} 00000 n \n" for o in offsets).encode("latin-1")
    out += (
        f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode(
            "latin-1"
        )
    )
    target = Path(path)
    target.write_bytes(bytes(out))
    return target


def _pdf_string(text: str) -> str:
    """A PDF literal string body: backslash and parentheses escaped, Latin-1 only."""
    text.encode("latin-1")  # Helvetica in a PDF string: Latin-1 (raises on other characters)
    return text.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")
