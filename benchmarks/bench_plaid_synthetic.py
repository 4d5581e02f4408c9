"""A larger corpus for the plaid benchmark: real vectors plus SYNTHETIC documents made from them.

The shared data sets hold about 1.2 M (SciFact) and 0.3 M (Cranfield) MiniLM token vectors; the
>= 5 M-token measurement therefore extends SciFact with synthetic documents. Each synthetic
document is a real SciFact document in which half of the token positions (chosen at random) take
the token at the same position of another random document, and every token is then perturbed
with Gaussian noise of norm about 0.3 and renormalised (cosine ~0.96 to its source). So the
vectors keep MiniLM's geometry (anisotropy, cluster structure), documents are not near-duplicates
of one another, and none of them is relevant to any query: the real documents come first, keep
their ids, and the SciFact qrels still apply.

Usage::

    .venv/bin/python benchmarks/bench_plaid_synthetic.py 5000000   # -> .cache/bench/scifact-x5M
    .venv/bin/python benchmarks/bench_plaid_synthetic.py 25000000 --increment 0.1
"""

from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

import numpy as np
from vectors_cache import CACHE, DATA, CachedVectors, load_vectors

_NOISE_NORM = 0.3
_SWAP = 0.5
_BATCH_ROWS = 1 << 16  # rows written per batch


def extended_name(base: str, tokens: int) -> str:
    return f"{base}-x{tokens // 1_000_000}M"


class _Appender:
    """Appends float16 rows to a ``.npy`` whose header already holds the final shape: plain
    writes, so generating tens of GB never holds more than one batch in memory."""

    def __init__(self, path: Path, rows: int, dim: int) -> None:
        self.handle = path.open("wb")
        header = {"descr": "<f2", "fortran_order": False, "shape": (rows, dim)}
        np.lib.format.write_array_header_1_0(self.handle, header)
        self.pending: list[np.ndarray] = []
        self.size = 0

    def add(self, rows: np.ndarray) -> None:
        self.pending.append(rows.astype(np.float16))
        self.size += len(rows)
        if self.size >= _BATCH_ROWS:
            self.flush()

    def flush(self) -> None:
        for rows in self.pending:
            self.handle.write(rows.tobytes())
        self.pending, self.size = [], 0

    def close(self) -> None:
        self.flush()
        self.handle.close()


def _synthetic(vecs: CachedVectors, rng: np.random.Generator, target: int) -> list[int]:
    """Source documents of synthetic documents until ``target`` tokens."""
    lengths = np.diff(vecs.doc_offsets)
    picks: list[int] = []
    total = 0
    while total < target:
        d = int(rng.integers(len(lengths)))
        picks.append(d)
        total += int(lengths[d])
    return picks


def _write_docs(
    vecs: CachedVectors, rng: np.random.Generator, picks: list[int], out: _Appender
) -> None:
    n_real = len(vecs.doc_ids)
    sigma = _NOISE_NORM / np.sqrt(vecs.dim)
    for d in picks:
        src = np.asarray(vecs.doc(d), dtype=np.float32)
        other = np.asarray(vecs.doc(int(rng.integers(n_real))), dtype=np.float32)
        swap = rng.random(len(src)) < _SWAP
        src[swap] = other[np.arange(len(src))[swap] % len(other)]
        src += sigma * rng.standard_normal(src.shape).astype(np.float32)
        src /= np.linalg.norm(src, axis=1, keepdims=True)
        out.add(src)


def make(base: str, target_tokens: int, seed: int = 0, increment: float = 0.0) -> Path:
    """Write ``<cache>/<base>-x<N>M`` (same layout as a vectors_cache entry), plus, with
    ``increment > 0``, ``increment_tokens.npy`` / ``increment_offsets.npy`` /
    ``increment_ids.json``: more synthetic documents (``increment`` times the corpus's tokens)
    for an incremental add after the build."""
    vecs = load_vectors(base)
    folder = CACHE / extended_name(base, target_tokens)
    if (folder / "info.json").is_file():
        return folder
    rng = np.random.default_rng(seed)
    lengths = np.diff(vecs.doc_offsets)
    real_tokens = int(vecs.doc_offsets[-1])
    picks = _synthetic(vecs, rng, target_tokens - real_tokens)
    all_lengths = np.concatenate([lengths, lengths[picks]])
    offsets = np.zeros(len(all_lengths) + 1, dtype=np.int64)
    np.cumsum(all_lengths, out=offsets[1:])
    total = int(offsets[-1])
    tmp = folder.with_name(folder.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    out = _Appender(tmp / "doc_tokens.npy", total, vecs.dim)
    for a in range(0, len(lengths), 256):
        out.add(
            np.asarray(
                vecs.doc_tokens[vecs.doc_offsets[a] : vecs.doc_offsets[min(a + 256, len(lengths))]]
            )
        )
    _write_docs(vecs, rng, picks, out)
    out.close()
    np.save(tmp / "doc_offsets.npy", offsets)
    ids = list(vecs.doc_ids) + [f"synthetic-{i}" for i in range(len(picks))]
    (tmp / "doc_ids.json").write_text(json.dumps(ids))
    extra = {}
    if increment > 0:
        more = _synthetic(vecs, rng, int(increment * total))
        inc_offsets = np.zeros(len(more) + 1, dtype=np.int64)
        np.cumsum(lengths[more], out=inc_offsets[1:])
        inc = _Appender(tmp / "increment_tokens.npy", int(inc_offsets[-1]), vecs.dim)
        _write_docs(vecs, rng, more, inc)
        inc.close()
        np.save(tmp / "increment_offsets.npy", inc_offsets)
        inc_ids = [f"synthetic-{len(picks) + i}" for i in range(len(more))]
        (tmp / "increment_ids.json").write_text(json.dumps(inc_ids))
        extra = {"increment_docs": len(more), "increment_tokens": int(inc_offsets[-1])}
    for name in ("query_tokens.npy", "query_offsets.npy", "query_ids.json"):
        shutil.copy(vecs.folder / name, tmp / name)
    info = {
        **vecs.info,
        "dataset": folder.name,
        "base": base,
        "synthetic": f"{len(picks)} synthetic documents ({total - real_tokens} tokens): real {base} documents with {_SWAP:.0%} of positions swapped with another document's and noise of norm {_NOISE_NORM} per token, renormalised",
        "n_docs": len(ids),
        "n_tokens": total,
        "seed": seed,
        **extra,
    }
    (tmp / "info.json").write_text(json.dumps(info, indent=2))
    tmp.rename(folder)
    return folder


def load_extended(name: str) -> CachedVectors:
    """Open an extension made by :func:`make` (qrels from its base data set)."""
    from colmax.beir import load_beir

    folder = CACHE / name
    if not (folder / "info.json").is_file():
        raise SystemExit(f"{folder} is missing: run benchmarks/bench_plaid_synthetic.py first")
    info = json.loads((folder / "info.json").read_text())
    data = load_beir(DATA / info["base"])
    return CachedVectors(
        folder,
        np.load(folder / "doc_tokens.npy", mmap_mode="r"),
        np.load(folder / "doc_offsets.npy"),
        json.loads((folder / "doc_ids.json").read_text()),
        np.load(folder / "query_tokens.npy"),
        np.load(folder / "query_offsets.npy"),
        json.loads((folder / "query_ids.json").read_text()),
        data.qrels,
        info,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("tokens", type=int, help="target corpus size in tokens, e.g. 5000000")
    parser.add_argument("--base", default="scifact")
    parser.add_argument(
        "--increment",
        type=float,
        default=0.0,
        help="also write this fraction of the corpus's tokens as more synthetic documents, "
        "for an incremental add after the build (0.1: 10%%)",
    )
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    print(make(args.base, args.tokens, args.seed, args.increment))


if __name__ == "__main__":
    main()
