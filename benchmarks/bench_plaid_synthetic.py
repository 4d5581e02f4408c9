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


def extended_name(base: str, tokens: int) -> str:
    return f"{base}-x{tokens // 1_000_000}M"


def make(base: str, target_tokens: int, seed: int = 0) -> Path:
    """Write ``<cache>/<base>-x<N>M`` (same layout as a vectors_cache entry)."""
    vecs = load_vectors(base)
    folder = CACHE / extended_name(base, target_tokens)
    if (folder / "info.json").is_file():
        return folder
    rng = np.random.default_rng(seed)
    lengths = np.diff(vecs.doc_offsets)
    n_real, real_tokens = len(lengths), int(vecs.doc_offsets[-1])
    picks: list[int] = []
    total = real_tokens
    while total < target_tokens:
        d = int(rng.integers(n_real))
        picks.append(d)
        total += int(lengths[d])
    all_lengths = np.concatenate([lengths, lengths[picks]])
    offsets = np.zeros(len(all_lengths) + 1, dtype=np.int64)
    np.cumsum(all_lengths, out=offsets[1:])
    tmp = folder.with_name(folder.name + ".tmp")
    tmp.mkdir(parents=True, exist_ok=True)
    out = np.lib.format.open_memmap(
        tmp / "doc_tokens.npy", mode="w+", dtype=np.float16, shape=(total, vecs.dim)
    )
    out[:real_tokens] = vecs.doc_tokens
    sigma = _NOISE_NORM / np.sqrt(vecs.dim)
    at = real_tokens
    for d in picks:
        src = np.asarray(vecs.doc(d), dtype=np.float32)
        other = np.asarray(vecs.doc(int(rng.integers(n_real))), dtype=np.float32)
        swap = rng.random(len(src)) < _SWAP
        src[swap] = other[np.arange(len(src))[swap] % len(other)]
        src += sigma * rng.standard_normal(src.shape).astype(np.float32)
        src /= np.linalg.norm(src, axis=1, keepdims=True)
        out[at : at + len(src)] = src
        at += len(src)
    out.flush()
    del out
    np.save(tmp / "doc_offsets.npy", offsets)
    ids = list(vecs.doc_ids) + [f"synthetic-{i}" for i in range(len(picks))]
    (tmp / "doc_ids.json").write_text(json.dumps(ids))
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
    args = parser.parse_args()
    print(make(args.base, args.tokens))


if __name__ == "__main__":
    main()
