"""PDF pages with a vision retriever: encode throughput, bytes per page, search latency.

No vision weights can be downloaded here, so the models are *tiny random* checkpoints
(:mod:`colmax.vision.tiny`) and the pages are *synthetic* (a generated PDF with a text layer).
Two models:

* ``tiny``: the test model (64 patches, dim 16): the cost of colmax's own pipeline around a
  model that costs almost nothing;
* ``colpali-shaped``: the same architecture at ColPali's geometry (448 x 448 pixels in 14-pixel
  patches = 1,024 patches + prompt = 1,030 vectors of dim 128 per page), so index sizes and
  search latency are those of a real ColPali index; its transformer is still tiny, so its
  pages/s is an upper bound, not a ColPali speed.

Reports, for ``--pages`` pages (default 1,000): pages/s to render and to encode; bytes per page
in vectors (``segments/``), page images (``pages/``) and the rest, without and with token
pooling (``pool_factor=3``); search p50/p95 over ``--queries`` text queries (flat and plaid).

Usage (timing runs take the shared lock)::

    flock /tmp/colmax-bench.lock .venv/bin/python benchmarks/bench_pages.py --pages 1000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from colmax import Engine
from colmax.encoders import load_encoder
from colmax.vision.pages import read_pages
from colmax.vision.tiny import TINY_WORDS, make_tiny_colpali, write_text_pdf

WORDS = [w for w in TINY_WORDS if len(w) > 2]


def machine() -> dict[str, Any]:
    info = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
    model = next(
        (ln.split(":", 1)[1].strip() for ln in info.splitlines() if ln.startswith("Model name")), ""
    )
    flags = next((ln for ln in info.splitlines() if ln.startswith("Flags")), "")
    wanted = ("avx512_bf16", "amx_bf16", "avx512_vnni", "avx2")
    return {
        "cpu": model,
        "flags": [f for f in wanted if f" {f}" in flags],
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "load_avg": os.getloadavg(),
    }


def folder_bytes(path: Path) -> int:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def make_pdf(path: Path, n: int, seed: int = 0) -> Path:
    rng = random.Random(seed)
    texts = [
        f"Page {i + 1}\n" + "\n".join(" ".join(rng.choices(WORDS, k=6)) for _ in range(8))
        for i in range(n)
    ]
    return write_text_pdf(path, texts)


def latency(engine: Engine, queries: list[str], k: int = 10) -> dict[str, float]:
    engine.search(queries[0], k=k)  # warm-up
    times = []
    for q in queries:
        start = time.perf_counter()
        engine.search(q, k=k)
        times.append((time.perf_counter() - start) * 1000)
    return {
        "p50_ms": round(statistics.median(times), 2),
        "p95_ms": round(float(np.percentile(times, 95)), 2),
    }


def index_row(
    engine: Engine, folder: Path, queries: list[str], pool: int, kind: str
) -> dict[str, Any]:
    n = len(engine)
    sample = engine.backend.get_vectors(engine.ids()[:50])
    return {
        "index": kind,
        "pool_factor": pool,
        "vectors_per_page": round(sum(len(v) for v in sample) / len(sample), 1),
        "bytes_per_page": {
            "vectors": int(
                (folder_bytes(folder / "segments") + folder_bytes(folder / "codecs")) / n
            ),
            "page_images": int(folder_bytes(folder / "pages") / n),
            "total": int(folder_bytes(folder) / n),
        },
        "search": latency(engine, queries),
    }


def run_model(
    name: str, model: Path, pdf: Path, args: argparse.Namespace, work: Path
) -> dict[str, Any]:
    """add_files once (timed end to end: render + encode + store + commit), then the same
    vectors pooled (pool_factor=3) and in a plaid index, without encoding again."""
    from colmax.pooling import pool_documents

    encoder = load_encoder(model)
    rng = random.Random(1)
    queries = [" ".join(rng.choices(WORDS, k=4)) for _ in range(args.queries)]
    start = time.perf_counter()
    n_render = sum(1 for _ in read_pages(pdf, dpi=args.dpi))
    render_s = time.perf_counter() - start
    folder = work / f"{name}-flat"
    engine = Engine(encoder, path=folder)
    start = time.perf_counter()
    engine.add_files([pdf], dpi=args.dpi, show_progress=False)
    add_s = time.perf_counter() - start
    n = len(engine)
    out: dict[str, Any] = {
        "model": name,
        "pages": n,
        "dim": encoder.dim,
        "render_pages_per_s": round(n_render / render_s, 1),
        "add_files_pages_per_s": round(n / add_s, 2),
        "indexes": [index_row(engine, folder, queries, 1, "flat")],
    }
    print(json.dumps(out), flush=True)
    docs = engine.get(engine.ids())
    vectors = engine.backend.get_vectors(engine.ids())
    start = time.perf_counter()
    pooled = pool_documents(vectors, 3)
    out["pool3_seconds_per_page"] = round((time.perf_counter() - start) / n, 4)
    variants = [("flat", 3, pooled)] + ([("plaid", 1, vectors)] if args.plaid else [])
    for kind, pool, vecs in variants:
        other_folder = work / f"{name}-{kind}-{pool}"
        other = Engine(encoder, path=other_folder, index=kind)
        other.add([d.text for d in docs], ids=[d.id for d in docs],
                  metadatas=[d.metadata for d in docs], embeddings=vecs)  # fmt: skip
        # the page images are the same files: count them once, from the first index
        row = index_row(other, other_folder, queries, pool, kind)
        row["bytes_per_page"]["page_images"] = out["indexes"][0]["bytes_per_page"]["page_images"]
        out["indexes"].append(row)
        other.close()
    engine.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--pages", type=int, default=1000)
    parser.add_argument("--queries", type=int, default=30)
    parser.add_argument("--dpi", type=int, default=72)
    parser.add_argument("--models", default="tiny,colpali-shaped")
    parser.add_argument("--plaid", action="store_true", help="also time a plaid index (pool 1)")
    parser.add_argument("--out", type=Path, help="write the JSON report here too")
    args = parser.parse_args()
    report: dict[str, Any] = {"machine_before": machine(), "synthetic": True, "runs": []}
    with tempfile.TemporaryDirectory(prefix="bench-pages-") as tmp:
        work = Path(tmp)
        pdf = make_pdf(work / "pages.pdf", args.pages)
        models = {
            "tiny": lambda: make_tiny_colpali(work / "tiny"),
            "colpali-shaped": lambda: make_tiny_colpali(
                work / "cp", image_size=448, patch_size=14, dim=128
            ),
        }
        for name in args.models.split(","):
            report["runs"].append(run_model(name, models[name](), pdf, args, work))
            print(json.dumps(report["runs"][-1]), flush=True)
    report["machine_after"] = machine()
    if args.out:
        args.out.write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
