"""Builds and searches xtr-warp-rs (WARP) or fast-plaid, in ``.venv-warp`` (torch 2.11).

Started by ``bench_plaid.py`` with ``.venv-warp/bin/python`` (``scripts/make_warp_env.sh``)::

    _warp_peer_worker.py warp|fastplaid VECTORS_DIR INDEX_DIR BUILD_JSON [--build-only]

``VECTORS_DIR`` is a ``benchmarks/vectors_cache.py`` entry; ``BUILD_JSON`` the build options
(``{}``: the library's defaults, e.g. ``{"nbits": 2}``). With ``--build-only`` the worker
builds the index (unless ``INDEX_DIR/build.json`` exists), records build seconds, CPU seconds,
peak RSS and bytes in ``build.json``, and exits: a fresh worker then loads the index, so its
peak RSS is the search's alone. Document ids are corpus positions.

Protocol (one JSON object per line): ready line ``{"ready": true, ...build.json, "load_rss_mb"}``;
then requests ``{"query": j, "k": 10, "threads": t, "params": {...}}`` answered with
``{"seconds", "ids", "scores", "rss_mb"}`` where ``seconds`` times the library's search call
for that one query, and ``params`` are the library's own search arguments (WARP: ``nprobe``,
``t_prime``, ``bound``, ``max_candidates``, ``centroid_score_threshold``; fast-plaid:
``n_ivf_probe``, ``n_full_scores``); ``{}`` means its defaults. ``threads`` sets
``torch.set_num_threads`` for both and WARP's ``num_threads``.
"""

from __future__ import annotations

import itertools
import json
import os
import resource
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np


def _protocol_stream() -> Any:
    """A private handle on the real stdout; fd 1 then goes to stderr (libraries print)."""
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    return out


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cpu_seconds() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def _folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _docs(folder: Path) -> list[Any]:
    import torch

    tokens = np.load(folder / "doc_tokens.npy", mmap_mode="r")
    offsets = np.load(folder / "doc_offsets.npy")
    return [
        torch.from_numpy(np.asarray(tokens[a:b], dtype=np.float32))
        for a, b in itertools.pairwise(offsets)
    ]


def _queries(folder: Path) -> list[Any]:
    import torch

    tokens = np.load(folder / "query_tokens.npy")
    offsets = np.load(folder / "query_offsets.npy")
    return [
        torch.from_numpy(tokens[a:b].astype(np.float32)) for a, b in itertools.pairwise(offsets)
    ]


class Warp:
    name = "xtr-warp-rs"

    def __init__(self, root: Path) -> None:
        from xtr_warp import XTRWarp

        self.index = XTRWarp(index=str(root / "index"))

    def build(self, docs: list[Any], options: dict[str, Any]) -> None:
        self.index.create(embeddings_source=docs, device="cpu", show_progress=False, **options)

    def load(self) -> None:
        import torch

        self.index.load(device="cpu", dtype=torch.float32)

    def search(self, q: Any, k: int, threads: int, params: dict[str, Any]) -> list[Any]:
        return self.index.search(
            queries_embeddings=q.unsqueeze(0),
            top_k=k,
            num_threads=threads,
            show_progress=False,
            **params,
        )[0]


class FastPlaid:
    name = "fast-plaid"

    def __init__(self, root: Path) -> None:
        from fast_plaid import search

        self.index = search.FastPlaid(index=str(root / "index"), device="cpu")

    def build(self, docs: list[Any], options: dict[str, Any]) -> None:
        self.index.create(documents_embeddings=docs, **options)

    def load(self) -> None:
        pass  # loads lazily at the first search (the warm-up queries of the benchmark)

    def search(self, q: Any, k: int, threads: int, params: dict[str, Any]) -> list[Any]:
        return self.index.search(
            queries_embeddings=q.unsqueeze(0), top_k=k, show_progress=False, **params
        )[0]


def main() -> None:
    method, vectors, root = sys.argv[1], Path(sys.argv[2]), Path(sys.argv[3])
    options = json.loads(sys.argv[4]) if len(sys.argv) > 4 else {}
    build_only = "--build-only" in sys.argv
    out = _protocol_stream()
    import torch

    engine = {"warp": Warp, "fastplaid": FastPlaid}[method](root)
    record = root / "build.json"
    if not record.is_file():
        docs = _docs(vectors)
        n_tokens = sum(len(d) for d in docs)
        start, cpu = time.perf_counter(), _cpu_seconds()
        engine.build(docs, options)
        info = {
            "build_seconds": time.perf_counter() - start,
            "build_cpu_seconds": _cpu_seconds() - cpu,
            "build_peak_rss_mb": _peak_rss_mb(),
            "bytes": _folder_bytes(root / "index"),
            "n_tokens": n_tokens,
            "options": options,
            "torch_threads": torch.get_num_threads(),
            "load_avg": os.getloadavg(),
        }
        record.write_text(json.dumps(info))
        del docs
    if build_only:
        return
    info = json.loads(record.read_text())
    queries = _queries(vectors)
    engine.load()
    import importlib.metadata as md

    info.update(
        ready=True,
        name=engine.name,
        version=md.version("xtr-warp-rs" if method == "warp" else "fast-plaid"),
        torch=torch.__version__,
        pid=os.getpid(),
        load_rss_mb=_peak_rss_mb(),
    )
    print(json.dumps(info), file=out, flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        if request.get("quit"):
            break
        threads = int(request.get("threads", 1))
        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        q = queries[request["query"]]
        start = time.perf_counter()
        hits = engine.search(q, request.get("k", 10), threads, request.get("params", {}))
        seconds = time.perf_counter() - start
        answer = {
            "seconds": seconds,
            "ids": [int(h[0]) for h in hits],
            "scores": [float(h[1]) for h in hits],
            "rss_mb": _peak_rss_mb(),
        }
        print(json.dumps(answer), file=out, flush=True)


if __name__ == "__main__":
    main()
