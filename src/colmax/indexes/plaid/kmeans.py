"""Euclidean k-means in plain torch, for the centroids of the compressed index.

The centroids serve two purposes: they route a query token to the few inverted lists worth
reading (``q . c``), and they are the base every token's residual is measured from. The mean of
a cluster minimises the residual energy the 2/4-bit codes must carry, so this is plain
(Euclidean) k-means, not spherical: means are not renormalised.

All heavy work is one float32 GEMM per chunk of points (the only fast dtype on CPUs without
AVX-512 BF16, see ``docs/benchmarks.md``); memory stays bounded by ``chunk`` x ``k`` floats.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

__all__ = ["assign", "kmeans"]

_CHUNK_ELEMENTS = 1 << 24  # similarities held per assignment chunk (64 MiB of float32)


def assign(points: torch.Tensor, centroids: torch.Tensor) -> torch.Tensor:
    """Index of the nearest centroid (Euclidean) of each point.

    Args:
        points: ``(n, dim)`` float32.
        centroids: ``(k, dim)`` float32.

    Returns:
        ``(n,)`` int64 centroid numbers.

    Examples:
        >>> c = torch.tensor([[0.0, 0.0], [10.0, 0.0]])
        >>> assign(torch.tensor([[1.0, 1.0], [9.0, -1.0]]), c).tolist()
        [0, 1]
    """
    # argmin |x - c|^2 = argmax (x . c - |c|^2 / 2): one GEMM, no (n, k, dim) difference tensor.
    half_norms = 0.5 * (centroids * centroids).sum(dim=1)
    out = torch.empty(points.shape[0], dtype=torch.int64)
    step = max(1, _CHUNK_ELEMENTS // max(1, centroids.shape[0]))
    ct = centroids.T.contiguous()
    for a in range(0, points.shape[0], step):
        sims = torch.mm(points[a : a + step], ct)
        sims -= half_norms
        out[a : a + step] = sims.argmax(dim=1)
    return out


def kmeans(
    points: torch.Tensor,
    k: int,
    *,
    iters: int = 8,
    seed: int = 0,
    progress: Callable[[int], None] | None = None,
) -> torch.Tensor:
    """Lloyd's k-means, initialised with ``k`` distinct random points.

    Empty clusters are re-seeded with the points farthest from their centroid, so all ``k``
    centroids stay in use.

    Args:
        points: ``(n, dim)`` float32, ``n >= k``.
        k: number of centroids.
        iters: Lloyd iterations (the index needs routing, not a converged optimum: ColBERTv2
            and PLAID train for a handful of iterations too).
        seed: seed of the initial choice, so builds are reproducible.
        progress: called with 1 after each iteration (a progress bar's ``update``).

    Returns:
        ``(k, dim)`` float32 centroids.

    Examples:
        >>> pts = torch.cat([torch.randn(50, 2) * 0.1, torch.randn(50, 2) * 0.1 + 5])
        >>> c = kmeans(pts, 2, seed=1)
        >>> sorted(round(float(x)) for x in c[:, 0])
        [0, 5]
    """
    n = points.shape[0]
    if not 0 < k <= n:
        raise ValueError(f"k-means needs 1 <= k <= n points, got k={k}, n={n}")  # internal
    gen = torch.Generator().manual_seed(seed)
    centroids = points[torch.randperm(n, generator=gen)[:k]].clone()
    for _ in range(iters):
        labels = assign(points, centroids)
        sums = torch.zeros_like(centroids).index_add_(0, labels, points)
        counts = torch.bincount(labels, minlength=k)
        filled = counts > 0
        centroids[filled] = sums[filled] / counts[filled].unsqueeze(1).to(points.dtype)
        empty = torch.nonzero(~filled).flatten()
        if empty.numel():
            dist = ((points - centroids[labels]) ** 2).sum(dim=1)
            far = torch.topk(dist, min(int(empty.numel()), n)).indices
            centroids[empty[: far.numel()]] = points[far]
        if progress is not None:
            progress(1)
    return centroids
