"""Figures for docs/benchmarks.md, drawn from the JSON reports the benchmark scripts write.

``bench_plaid.py`` calls :func:`plaid_figures` after each run; the figures can also be redrawn
from saved reports without re-running anything::

    .venv/bin/python benchmarks/plots.py .cache/bench/plaid/report-scifact-n2.json

The SVGs are deterministic (no date, fixed ids), so redrawing unchanged numbers leaves git clean.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # files only, no display

import matplotlib.pyplot as plt
from matplotlib.ticker import NullFormatter, ScalarFormatter

IMG = Path(__file__).resolve().parents[1] / "docs" / "img"
_STYLE = {"svg.hashsalt": "colmax", "svg.fonttype": "none", "font.size": 9}


def _save(fig: Any, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, bbox_inches="tight", metadata={"Date": None})
    plt.close(fig)
    return path


def plaid_figures(report: dict[str, Any], out: Path = IMG) -> list[Path]:
    """Latency/recall curve and bytes-per-token bars of one ``bench_plaid.py`` report.

    Returns:
        The files written: ``plaid-<dataset>-curve.svg`` (when the report has a curve) and
        ``plaid-<dataset>-size.svg``.
    """
    plt.rcParams.update(_STYLE)
    name = report["dataset"]
    methods = report["methods"]
    written = []
    if report.get("curve"):
        fig, ax = plt.subplots(figsize=(6.0, 3.6))
        pts = report["curve"]
        ax.plot(
            [p["p50_ms"] for p in pts],
            [p["recall@10"] for p in pts],
            "o-",
            color="#1f77b4",
            label="colmax plaid (nprobe / ndocs / nfinal)",
        )
        for p in pts:
            ax.annotate(
                f"{p['nprobe']}/{p['ndocs']}/{p['nfinal']}",
                (p["p50_ms"], p["recall@10"]),
                textcoords="offset points",
                xytext=(4, -10),
                fontsize=7,
            )
        markers = iter("*s^Dvx")
        for method, row in methods.items():
            if "recall@10" not in row:
                continue
            label = "colmax plaid, defaults for k=10" if method == "colmax plaid" else method
            ax.plot(row["p50_ms"], row["recall@10"], next(markers), ms=8, label=label)
        ax.axhline(0.95, color="grey", lw=0.8, ls="--")
        ax.set_xscale("log")
        ticks = (5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)
        lo, hi = ax.get_xlim()
        ax.set_xticks([t for t in ticks if lo <= t <= hi])
        ax.xaxis.set_major_formatter(ScalarFormatter())
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("p50 latency per query, ms (log scale)")
        ax.set_ylabel("Recall@10 of the exact top 10")
        ax.set_title(f"{name}: {report['n_tokens']:,} token vectors, dim {report['dim']}")
        ax.legend(loc="lower right", fontsize=7)
        ax.grid(True, which="both", lw=0.3)
        written.append(_save(fig, out / f"plaid-{name}-curve.svg"))
    rows = [(m, r["bytes_per_token"]) for m, r in methods.items() if "bytes_per_token" in r]
    fig, ax = plt.subplots(figsize=(6.0, 0.5 + 0.45 * len(rows)))
    ax.barh([m for m, _ in rows], [b for _, b in rows], color="#4c72b0")
    for i, (_, b) in enumerate(rows):
        ax.text(b, i, f" {b:.0f}", va="center", fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("bytes per token on disk")
    ax.set_title(f"{name}: index size")
    ax.set_xlim(0, max(b for _, b in rows) * 1.15)
    written.append(_save(fig, out / f"plaid-{name}-size.svg"))
    return written


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("reports", nargs="+", type=Path, help="bench_plaid.py JSON reports")
    parser.add_argument("--out", type=Path, default=IMG)
    args = parser.parse_args()
    for path in args.reports:
        for written in plaid_figures(json.loads(path.read_text()), args.out):
            print(f"written {written}")


if __name__ == "__main__":
    main()
