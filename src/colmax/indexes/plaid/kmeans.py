"""Euclidean k-means in plain torch, for the centroids of the compressed index.

The centroids serve two purposes: they route a query token to the few inverted lists worth
reading (``q . c``), and they are the base every token's residual is measured from. The mean of
a cluster minimises the residual energy the 2/4-bit codes must carry, so this is plain
(Euclidean) k-means, not spherical: means are not renormalised.

All heavy work is one float32 GEMM per chunk of points (the only fast dtype on CPUs without
AVX-512 BF16, see ``docs/benchmarks.md``); memory stays bounded by ``chunk`` x ``k`` floats.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import torch

__all__ = ["ROUTE_FROM", "Router", "assign", "kmeans", "nearest"]

_CHUNK_ELEMENTS = 1 << 24  # similarities held per assignment chunk (64 MiB of float32)
_ROUTE_CHUNK = 1 << 15  # points routed per step
_POINT_CHUNK = 1 << 16  # k-means points converted to float32 and assigned per step
#: From this many centroids on, nearest-centroid search goes through a :class:`Router`.
ROUTE_FROM = 1024
#: Groups (of about sqrt(k)) searched per point. On SciFact MiniLM tokens with 4,096
#: centroids, 8 of 64 groups found the exact nearest centroid for 99.0% of tokens (residual
#: energy +0.4%) with 3.3x less CPU time than the full GEMM; 4 groups: 96.2%, +1.5%, 6x.
ROUTE_GROUPS = 8


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


class Router:
    """Nearest-centroid search in two levels, for many centroids.

    The centroids are grouped by a small k-means into about ``sqrt(k)`` groups; a point is
    compared with the group means, then only with the members of its ``probe`` nearest groups
    (one GEMM per group over the points routed to it). Approximate: where the true nearest
    centroid sits in an unprobed group, a slightly farther one is chosen (see
    ``ROUTE_GROUPS`` for measurements).

    Args:
        centroids: ``(k, dim)`` float32.
        probe: groups searched per point.
        seed: seed of the grouping.

    Examples:
        >>> g = torch.Generator().manual_seed(0)
        >>> cents = torch.randn(1024, 8, generator=g)
        >>> pts = cents[:300] + 0.01 * torch.randn(300, 8, generator=g)
        >>> bool((Router(cents).assign(pts) == torch.arange(300)).float().mean() > 0.95)
        True
    """

    def __init__(self, centroids: torch.Tensor, probe: int = ROUTE_GROUPS, seed: int = 0) -> None:
        n_groups = max(1, round(centroids.shape[0] ** 0.5))
        self.centroids = centroids
        self.means = kmeans(centroids, n_groups, iters=6, seed=seed)
        groups = assign(centroids, self.means)
        order = torch.argsort(groups, stable=True)
        counts = torch.bincount(groups, minlength=n_groups)
        self._members = list(torch.split(order, counts.tolist()))
        self._half = 0.5 * (centroids * centroids).sum(dim=1)
        self._half_means = 0.5 * (self.means * self.means).sum(dim=1)
        self.probe = min(probe, n_groups)

    def assign(self, points: torch.Tensor) -> torch.Tensor:
        """``(n,)`` int64: the nearest centroid among the probed groups of each point."""
        out = torch.empty(points.shape[0], dtype=torch.int64)
        for a in range(0, points.shape[0], _ROUTE_CHUNK):
            out[a : a + _ROUTE_CHUNK] = self._assign(points[a : a + _ROUTE_CHUNK])
        return out

    def _assign(self, points: torch.Tensor) -> torch.Tensor:
        n = points.shape[0]
        best = torch.full((n,), float("-inf"))
        out = torch.zeros(n, dtype=torch.int64)
        routes = (points @ self.means.T - self._half_means).topk(self.probe, dim=1).indices
        flat_group = routes.flatten()
        flat_point = torch.arange(n).repeat_interleave(self.probe)
        order = torch.argsort(flat_group, stable=True)
        counts = torch.bincount(flat_group, minlength=len(self._members)).tolist()
        for g, idx in enumerate(torch.split(flat_point[order], counts)):
            members = self._members[g]
            if idx.numel() == 0 or members.numel() == 0:
                continue
            sims = points[idx] @ self.centroids[members].T - self._half[members]
            value, arg = sims.max(dim=1)
            better = value > best[idx]
            best[idx[better]] = value[better]
            out[idx[better]] = members[arg[better]]
        return out


def nearest(points: torch.Tensor, centroids: torch.Tensor, router: Router | None) -> torch.Tensor:
    """Nearest centroid of each point: through ``router`` when given, else exactly."""
    return assign(points, centroids) if router is None else router.assign(points)


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
        points: ``(n, dim)`` float32 or float16, ``n >= k``.
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
    centroids = points[torch.randperm(n, generator=gen)[:k]].to(torch.float32)
    labels = torch.empty(n, dtype=torch.int64)
    for _ in range(iters):
        router = Router(centroids, seed=seed) if k >= ROUTE_FROM else None
        sums = torch.zeros_like(centroids)
        counts = torch.zeros(k, dtype=torch.int64)
        # In chunks: the points may be float16 (half the memory of a large sample), and no
        # temporary is ever as large as the sample.
        for a, x in _chunks(points):
            chunk_labels = nearest(x, centroids, router)
            labels[a : a + x.shape[0]] = chunk_labels
            sums.index_add_(0, chunk_labels, x)
            counts += torch.bincount(chunk_labels, minlength=k)
        filled = counts > 0
        centroids[filled] = sums[filled] / counts[filled].unsqueeze(1).to(torch.float32)
        empty = torch.nonzero(~filled).flatten()
        if empty.numel():
            dist = torch.cat(
                [
                    ((x - centroids[labels[a : a + x.shape[0]]]) ** 2).sum(dim=1)
                    for a, x in _chunks(points)
                ]
            )
            far = torch.topk(dist, min(int(empty.numel()), n)).indices
            centroids[empty[: far.numel()]] = points[far].to(torch.float32)
        if progress is not None:
            progress(1)
    return centroids


def _chunks(points: torch.Tensor) -> Iterator[tuple[int, torch.Tensor]]:
    """``(start, float32 rows)`` of ``points``, :data:`_POINT_CHUNK` at a time."""
    for a in range(0, points.shape[0], _POINT_CHUNK):
        yield a, points[a : a + _POINT_CHUNK].to(torch.float32)
