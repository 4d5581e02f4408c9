"""The vision token encoder: text queries and page images into one vector per token or patch.

A ColPali-style retriever embeds a page *image* as one vector per image patch (plus the few
tokens of its visual prompt) and a text *query* as one vector per token, in one space; MaxSim
compares them as it compares text. :class:`VisionEncoder` runs such a model with its own
processor, so the vectors are those the model's authors compute: padding rows (the attention
mask's zeros, which the models multiply to zero vectors) are dropped and nothing else changes.

For every page it also records where each image patch sits (:attr:`EncodedPage.grid`), so a
search hit can be drawn as a heatmap over the page without encoding it again.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from tqdm.auto import tqdm

from colmax import deadline
from colmax.encoders.tokens import tokenizer_lock
from colmax.errors import InvalidInputError
from colmax.validation import as_list, check_positive_int, check_texts

__all__ = ["PAGE_PROGRESS_THRESHOLD", "EncodedPage", "VisionEncoder"]

logger = logging.getLogger(__name__)

#: With ``show_progress=None`` a progress bar is shown for more pages than this.
PAGE_PROGRESS_THRESHOLD = 16
_DEFAULT_BATCH = {"queries": 32, "images": 4}


@dataclass(frozen=True)
class EncodedPage:
    """One page image's vectors and where its patches are.

    Attributes:
        vectors: float32 CPU ``(n_vectors, dim)``, L2-normalised rows.
        grid: int32 ``(rows, cols)``: ``grid[r, c]`` is the row of ``vectors`` made from the
            patch in row ``r``, column ``c`` of the page (patches tile the whole page, left to
            right, top to bottom); ``None`` when the model's layout is not known.
    """

    vectors: torch.Tensor
    grid: np.ndarray | None


class VisionEncoder:
    """Encode text queries and page images with a ColPali / ColQwen model (``Encoder`` protocol).

    Build one with :func:`colmax.encoders.load_encoder` (it detects the format); the
    constructor takes parts that are already loaded.

    Attributes:
        format: ``"colpali-hf"`` (transformers' classes) or ``"colpali-engine"``.
        family: ``"paligemma"``, ``"qwen2"`` or ``"idefics3"``.
        device: where the model runs.
        dtype: the model's floating-point type (outputs are always float32 on the CPU).
        batch_size: queries per forward pass; pages go ``image_batch_size`` at a time.
    """

    #: What documents are for this encoder: page images, not texts.
    modality = "image"

    def __init__(
        self,
        *,
        name: str,
        model: Any,
        processor: Any,
        format: str,
        family: str,
        device: torch.device,
        dtype: torch.dtype,
        revision: str | None = None,
        requested_dtype: str | None = None,
        batch_size: int | None = None,
        image_batch_size: int | None = None,
    ) -> None:
        self._name = name
        self.model = model.eval()
        self.processor = processor
        self.format = format
        self.family = family
        self.device = device
        self.dtype = dtype
        self.revision = revision
        self._requested_dtype = requested_dtype
        self.batch_size = _check_batch(
            _DEFAULT_BATCH["queries"] if batch_size is None else batch_size
        )
        self.image_batch_size = _check_batch(
            _DEFAULT_BATCH["images"] if image_batch_size is None else image_batch_size
        )
        self._image_token_id = _image_token_id(processor)
        with torch.inference_mode():
            probe = self._forward(self._process(text=["a"]))
        self._dim = int(probe.shape[-1])

    # ------------------------------------------------------------------ facts
    @property
    def name(self) -> str:
        """Model folder (absolute) or Hub id the encoder was loaded from."""
        return self._name

    @property
    def dim(self) -> int:
        """Dimension of every output vector."""
        return self._dim

    @property
    def tokenizer(self) -> Any:
        """The processor's tokenizer."""
        return self.processor.tokenizer

    def __repr__(self) -> str:
        return (
            f"VisionEncoder(name={self._name!r}, format={self.format!r}, dim={self._dim}, "
            f"device={str(self.device)!r}, dtype={str(self.dtype).removeprefix('torch.')!r})"
        )

    def config(self) -> dict[str, Any]:
        """Settings that rebuild this encoder: ``load_encoder(**encoder.config())``.

        The device is left out on purpose (an index built on a GPU must load on a laptop).
        """
        return {
            "model_name_or_path": self._name,
            "revision": self.revision,
            "dtype": self._requested_dtype,
            "format": self.format,
            "batch_size": self.batch_size,
            "image_batch_size": self.image_batch_size,
        }

    # ------------------------------------------------------------------ encoding
    def encode_queries(
        self,
        texts: Sequence[str],
        *,
        batch_size: int | None = None,
        show_progress: bool | None = None,
    ) -> list[torch.Tensor]:
        """Encode text queries with the processor's query template (prefix, augmentation).

        Args:
            texts: the queries.
            batch_size: queries per forward pass (default: :attr:`batch_size`).
            show_progress: tqdm progress bar; ``None`` shows one above 1,000 queries.

        Returns:
            One float32 CPU tensor ``(n_tokens, dim)`` per query, in input order; ``n_tokens``
            is the number of positions the attention mask keeps (what the model scores with).

        Raises:
            InvalidInputError: ``texts`` is a bare string or holds a non-string.
            EmptyTextError: a text is empty or whitespace only.
        """
        items = check_texts(as_list(texts, "texts"), "queries")
        size = _check_batch(self.batch_size if batch_size is None else batch_size)
        show = len(items) > 1000 if show_progress is None else bool(show_progress)
        out: list[torch.Tensor] = [torch.empty(0)] * len(items)
        with tqdm(total=len(items), desc="Encoding queries", disable=not show) as bar:
            for start in range(0, len(items), size):
                deadline.check()  # a caller's deadline (a server request) stops between batches
                chunk = items[start : start + size]
                for rows, batch in self._batches(chunk, is_text=True):
                    for i, (v, _) in zip(rows, self._run(batch, with_grid=False)):
                        out[start + i] = v
                bar.update(len(chunk))
        return out

    def encode_documents(
        self,
        texts: Sequence[str],
        *,
        batch_size: int | None = None,
        show_progress: bool | None = None,
    ) -> list[torch.Tensor]:
        """Refused: this model's documents are page images.

        Raises:
            InvalidInputError: always; use :meth:`encode_images`, ``Engine.add(images=...)``
                or ``Engine.add_files``.
        """
        raise InvalidInputError(
            f"{self._name} embeds page images, not texts: index pages with "
            "engine.add(images=[...]) or engine.add_files([...]) (PDFs and image files)"
        )

    def encode_images(
        self,
        images: Sequence[Any],
        *,
        batch_size: int | None = None,
        show_progress: bool | None = None,
    ) -> list[torch.Tensor]:
        """Encode page images: one float32 ``(n_vectors, dim)`` CPU tensor per image.

        Args:
            images: PIL images or image file paths.
            batch_size: pages per forward pass (default: :attr:`image_batch_size`).
            show_progress: tqdm progress bar; ``None`` shows one above
                :data:`PAGE_PROGRESS_THRESHOLD` pages.
        """
        pages = self.encode_pages(images, batch_size=batch_size, show_progress=show_progress)
        return [p.vectors for p in pages]

    def encode_pages(
        self,
        images: Sequence[Any],
        *,
        batch_size: int | None = None,
        show_progress: bool | None = None,
    ) -> list[EncodedPage]:
        """Encode page images and locate their patches (see :class:`EncodedPage`).

        Raises:
            InvalidInputError: an item is neither a PIL image nor a readable image file.
        """
        from colmax.vision.pages import load_image

        items = as_list(images, "images")
        size = _check_batch(self.image_batch_size if batch_size is None else batch_size)
        show = len(items) > PAGE_PROGRESS_THRESHOLD if show_progress is None else show_progress
        out: list[EncodedPage | None] = [None] * len(items)
        with tqdm(total=len(items), desc="Encoding pages", disable=not show, unit="page") as bar:
            for start in range(0, len(items), size):
                deadline.check()
                chunk = [load_image(x) for x in items[start : start + size]]
                for rows, batch in self._batches(chunk, is_text=False):
                    for i, (v, g) in zip(rows, self._run(batch, with_grid=True)):
                        out[start + i] = EncodedPage(v, g)
                bar.update(len(chunk))
        return [p for p in out if p is not None]

    def query_tokens(self, text: str) -> list[str]:
        """The token behind each vector of ``encode_queries([text])[0]``, as the tokenizer
        writes it (prefix and augmentation tokens included)."""
        batch = self._process(text=[text])
        keep = batch["attention_mask"][0].bool()
        ids = batch["input_ids"][0][keep].tolist()
        return [str(t) for t in self.tokenizer.convert_ids_to_tokens(ids)]

    # ------------------------------------------------------------------ internals
    def _batches(self, chunk: list[Any], *, is_text: bool) -> list[tuple[list[int], Any]]:
        """``(positions in chunk, processor batch)`` pairs covering ``chunk``.

        transformers' retrieval classes give every input the same vectors padded or not, so a
        chunk is one batch. colpali-engine's ``ColPali`` calls PaliGemma without
        ``token_type_ids`` for queries, and then padding changes the vectors of the shorter
        inputs; for colpali-engine checkpoints inputs are therefore processed one by one and
        batched only with others of the very same length (no padding at all), so each gets
        the vectors it gets alone.
        """
        if self.format != "colpali-engine":
            return [(list(range(len(chunk))), self._process(**_arg(chunk, is_text)))]
        groups: dict[tuple[Any, ...], list[tuple[int, Any]]] = {}
        for i, item in enumerate(chunk):
            batch = self._process(**_arg([item], is_text))
            key = tuple(
                (k, tuple(v.shape)) for k, v in sorted(batch.items()) if hasattr(v, "shape")
            )
            groups.setdefault(key, []).append((i, batch))
        out = []
        for members in groups.values():
            first = members[0][1]
            merged = {
                k: torch.cat([b[k] for _, b in members]) if hasattr(v, "shape") else v
                for k, v in first.items()
            }
            out.append(([i for i, _ in members], merged))
        return out

    def _process(self, *, text: list[str] | None = None, images: list[Any] | None = None) -> Any:
        """The processor's batch for queries (``text``) or pages (``images``), under the
        tokenizer's lock: its padding and truncation are state shared with every other caller
        (see :mod:`colmax.encoders.tokens`)."""
        with tokenizer_lock(self.processor.tokenizer):
            # Positional: transformers names the argument ``text``, colpali-engine ``texts``.
            if images is not None:
                return self.processor.process_images(images)
            return self.processor.process_queries(text)

    @torch.inference_mode()
    def _run(self, batch: Any, *, with_grid: bool) -> list[tuple[torch.Tensor, np.ndarray | None]]:
        vectors = self._forward(batch).float().cpu()
        mask = batch["attention_mask"].bool()
        out = []
        for i in range(len(vectors)):
            keep = mask[i].clone()
            # colpali-engine's mask_non_image_embeddings zeroes prompt rows of pages: a zero
            # vector has no direction (and colmax refuses it), so it is dropped like padding.
            keep &= vectors[i].abs().amax(dim=-1) > 0
            grid = self._grid(batch, i, keep) if with_grid else None
            out.append((vectors[i][keep].clone(), grid))
        return out

    def _forward(self, batch: Any) -> torch.Tensor:
        inputs = {k: v for k, v in batch.items() if k != "labels"}
        inputs = {k: v.to(self.device) if hasattr(v, "to") else v for k, v in inputs.items()}
        if "pixel_values" in inputs:
            inputs["pixel_values"] = inputs["pixel_values"].to(self.dtype)
        out = self.model(**inputs)
        return out if isinstance(out, torch.Tensor) else out.embeddings

    def _grid(self, batch: Any, i: int, keep: torch.Tensor) -> np.ndarray | None:
        """Rows (after dropping padding) of the image tokens, laid out as the patch grid."""
        if self._image_token_id is None:
            return None
        ids = batch["input_ids"][i]
        row_of = torch.cumsum(keep.long(), 0) - 1  # position -> kept row
        if self.family == "idefics3":
            return self._tiled_grid(ids, keep, row_of)
        image_rows = row_of[(ids == self._image_token_id) & keep].numpy().astype(np.int32)
        shape = self._grid_shape(batch, i, len(image_rows))
        if shape is None or shape[0] * shape[1] != len(image_rows):
            return None
        return image_rows.reshape(shape)

    def _grid_shape(self, batch: Any, i: int, n: int) -> tuple[int, int] | None:
        if self.family == "paligemma":  # SigLIP: a square grid over the resized page
            side = math.isqrt(n)
            return (side, side) if side * side == n else None
        if self.family == "qwen2" and "image_grid_thw" in batch:
            # Qwen2-VL merges merge x merge patches into one token, row-major over the grid.
            t, h, w = (int(x) for x in batch["image_grid_thw"][i])
            merge = int(getattr(self.processor.image_processor, "merge_size", 2))
            return (h // merge, w // merge) if t == 1 else None
        return None

    def _tiled_grid(
        self, ids: torch.Tensor, keep: torch.Tensor, row_of: torch.Tensor
    ) -> np.ndarray | None:
        """Idefics3 (ColSmol, ColIdefics3) cuts a page into rows x cols tiles plus a downscaled
        global image, each a run of ``image_seq_len`` image tokens (a square grid) after a tag:
        ``<row_i_col_j>`` or ``<global-img>``. The page's grid is the tiles laid side by side;
        the global image's vectors stay searchable but have no place of their own on the page,
        so they are not drawn (a page small enough to be one tile is its global image).
        """
        tokens = self.processor.tokenizer.convert_ids_to_tokens(ids.tolist())
        is_image = ((ids == self._image_token_id) & keep).tolist()
        runs: list[tuple[str, list[int]]] = []  # (tag before the run, kept rows of the run)
        for pos, image in enumerate(is_image):
            if not image:
                continue
            if pos == 0 or not is_image[pos - 1]:
                runs.append((str(tokens[pos - 1]) if pos else "", []))
            runs[-1][1].append(int(row_of[pos]))
        if not runs or len({len(rows) for _, rows in runs}) != 1:
            return None
        side = math.isqrt(len(runs[0][1]))
        if side * side != len(runs[0][1]):
            return None
        tiles = {}
        for tag, rows in runs:
            found = _TILE_TAG.fullmatch(tag)
            if found:
                tiles[(int(found[1]) - 1, int(found[2]) - 1)] = rows
        if not tiles:  # one global image: the whole page
            return np.asarray(runs[0][1], dtype=np.int32).reshape(side, side)
        n_rows = 1 + max(r for r, _ in tiles)
        n_cols = 1 + max(c for _, c in tiles)
        if len(tiles) != n_rows * n_cols:
            return None
        grid = np.empty((n_rows * side, n_cols * side), dtype=np.int32)
        for (r, c), rows in tiles.items():
            block = np.asarray(rows, dtype=np.int32).reshape(side, side)
            grid[r * side : (r + 1) * side, c * side : (c + 1) * side] = block
        return grid


_TILE_TAG = re.compile(r"<row_(\d+)_col_(\d+)>")


def _arg(chunk: list[Any], is_text: bool) -> dict[str, list[Any]]:
    return {"text": chunk} if is_text else {"images": chunk}


def _check_batch(value: Any) -> int:
    return check_positive_int(value, "batch_size")


def _image_token_id(processor: Any) -> int | None:
    token_id = getattr(processor, "image_token_id", None)
    if isinstance(token_id, int):
        return token_id
    token = getattr(processor, "image_token", None) or getattr(
        processor.tokenizer, "image_token", None
    )
    if isinstance(token, str):
        value = processor.tokenizer.convert_tokens_to_ids(token)
        return int(value) if isinstance(value, int) else None
    return None
