"""Visual explanations: which query tokens matched which patches of a page, as a PNG heatmap.

MaxSim sums, over query vectors, each one's best similarity among the page's vectors. For a
page, those vectors are image patches (or pooled groups of patches), and the patch grid stored
at index time (:mod:`colmax.vision.store`) says where each sits. :class:`PageExplanation`
keeps the query-by-page similarity matrix and the grid, so it can draw:

- the default picture: a heatmap of each patch's best similarity to any query token, with the
  patches that won a query token's MaxSim outlined and labelled with the token (their
  similarities are the terms of the score);
- ``token=i``: the similarity map of one query token over the page (as colpali-engine's
  interpretability plots do, one token at a time).

Rendering needs Pillow only (``colmax[vision]``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from colmax.errors import InvalidInputError
from colmax.validation import to_vectors

__all__ = ["PageExplanation"]

# A small perceptual colour ramp (dark blue -> teal -> yellow), sampled from viridis.
_RAMP = np.array(
    [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]], dtype=np.float64
)
_OUTLINE = (255, 40, 40)
# Query tokens that are template, not content: skipped in labels (their matches still count).
_FILLER = {"<pad>", "<|endoftext|>", "<bos>", "<eos>", "\n", "Ċ"}


@dataclass(frozen=True)
class PageExplanation:
    """The page side of an :class:`~colmax.explain.Explanation`.

    Attributes:
        image: the page image's name in the index's page store.
        grid: int32 ``(rows, cols)``: the document vector row of each patch.
        similarity: float32 ``(n_query, n_document)`` cosine similarities.
        query_tokens: the token behind each query vector (``""`` when unknown).
        load_image: returns the page as a PIL image (reads the page store).
    """

    image: str
    grid: np.ndarray
    similarity: np.ndarray
    query_tokens: tuple[str, ...]
    load_image: Callable[[], Any] = field(repr=False, compare=False)

    def best_rows(self) -> np.ndarray:
        """The document row each query vector matched best (its MaxSim term)."""
        return np.asarray(self.similarity.argmax(axis=1))

    def patch_map(self, token: int | None = None) -> np.ndarray:
        """``(rows, cols)`` similarity per patch: of query vector ``token``, or the best over
        all query vectors (``None``)."""
        if token is None:
            per_row = self.similarity.max(axis=0)
        else:
            n = self.similarity.shape[0]
            if isinstance(token, bool) or not isinstance(token, int) or not 0 <= token < n:
                raise InvalidInputError(
                    f"token must be a query position in [0, {n}), got {token!r}"
                )
            per_row = self.similarity[token]
        return np.asarray(per_row[self.grid], dtype=np.float32)

    def matched_patches(self) -> list[list[tuple[int, int]]]:
        """Per query vector, the ``(row, col)`` patches of the document vector it matched
        (empty when it matched a prompt token rather than a patch; several after pooling)."""
        best = self.best_rows()
        return [[(int(r), int(c)) for r, c in np.argwhere(self.grid == j)] for j in best]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready summary: image name, grid shape, matched patches per query vector."""
        return {
            "image": self.image,
            "grid": list(self.grid.shape),
            "matched_patches": [[list(p) for p in ps] for ps in self.matched_patches()],
        }

    def render(self, *, token: int | None = None, alpha: float = 0.5) -> Any:
        """The page with the heatmap drawn over it (an RGB PIL image)."""
        from PIL import Image, ImageDraw

        if not 0.0 <= alpha <= 1.0:
            raise InvalidInputError(f"alpha must be in [0, 1], got {alpha!r}")
        page = self.load_image().convert("RGB")
        heat = _colour(self.patch_map(token))
        overlay = Image.fromarray(heat, "RGB").resize(page.size, Image.Resampling.NEAREST)
        out = Image.blend(page, overlay, alpha)
        draw = ImageDraw.Draw(out)
        rows, cols = self.grid.shape
        cell_w, cell_h = page.size[0] / cols, page.size[1] / rows
        positions = range(len(self.query_tokens)) if token is None else [token]
        labels: dict[tuple[int, int], list[str]] = {}
        matched = self.matched_patches()
        for i in positions:
            name = self.query_tokens[i] if i < len(self.query_tokens) else ""
            for patch in matched[i]:
                labels.setdefault(patch, [])
                if name and name not in _FILLER and name not in labels[patch]:
                    labels[patch].append(name)
        for (r, c), names in labels.items():
            box = (c * cell_w, r * cell_h, (c + 1) * cell_w - 1, (r + 1) * cell_h - 1)
            draw.rectangle(box, outline=_OUTLINE, width=max(1, round(min(cell_w, cell_h) / 12)))
            if names:
                draw.text((box[0] + 2, box[1] + 1), " ".join(names)[:24], fill=_OUTLINE)
        return out

    def save(self, path: str | Path, *, token: int | None = None, alpha: float = 0.5) -> Path:
        """Write :meth:`render` to ``path`` as PNG; returns the path."""
        target = Path(path)
        self.render(token=token, alpha=alpha).save(target, format="PNG")
        return target


def _colour(values: np.ndarray) -> np.ndarray:
    """Map a 2-d array to RGB uint8 through :data:`_RAMP`, scaled to its own range."""
    lo, hi = float(values.min()), float(values.max())
    scaled = (values - lo) / (hi - lo) if hi > lo else np.zeros_like(values)
    pos = scaled * (len(_RAMP) - 1)
    low = np.clip(np.floor(pos).astype(int), 0, len(_RAMP) - 2)
    frac = (pos - low)[..., None]
    rgb = _RAMP[low] * (1 - frac) + _RAMP[low + 1] * frac
    return np.clip(rgb, 0, 255).astype(np.uint8)


def page_explanation(
    image: str,
    grid: np.ndarray,
    query_vectors: Any,
    document_vectors: Any,
    query_tokens: Sequence[str],
    load_image: Callable[[], Any],
) -> PageExplanation:
    """Build a :class:`PageExplanation` from the vectors a search scored.

    Raises:
        InvalidInputError: the grid points outside the document's vectors (vectors and grid
            of different documents).
    """
    # L2-normalised as explain_vectors does, so the similarities equal the explanation's.
    q = to_vectors([query_vectors], None, "query_vectors")[0]
    d = to_vectors([document_vectors], q.shape[1], "document_vectors")[0]
    if grid.size and (int(grid.max()) >= len(d) or int(grid.min()) < 0):
        raise InvalidInputError(
            f"the patch grid points at row {int(grid.max())} of a document with {len(d)} vectors"
        )
    similarity = (q @ d.T).astype(np.float32)
    tokens = tuple(query_tokens) if len(query_tokens) == len(q) else ("",) * len(q)
    return PageExplanation(image, grid, similarity, tokens, load_image)
