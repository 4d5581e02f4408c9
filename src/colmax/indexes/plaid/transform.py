"""Transform coding of residuals: a rotation, then bits where the variance is.

Scalar quantisation with the same number of bits in every dimension wastes bits: after k-means
the residuals of real embeddings still have a few directions of large variance and many of
small variance. Transform coding (the classic recipe behind JPEG and OPQ) fixes that in three
steps, all learnt from the training sample:

1. **Rotate.** ``y = r P`` with ``P`` the principal axes of the residuals (an orthogonal
   matrix), so the coordinates are uncorrelated and sorted by variance.
2. **Allocate bits.** Coordinates are taken in groups of 8 (one group fills whole bytes at any
   width); each group gets a width of 0, 1, 2, 4 or 8 bits per coordinate, greedily, where the
   measured squared error drops the most per byte, until the byte budget is spent.
3. **Quantise** each coordinate with its own buckets: quantile buckets (ColBERTv2's residual
   buckets, per coordinate) refined by Lloyd-Max iterations, decoded to the mean of the bucket.

Scores never need the rotation undone: ``q . r = (q P) . y``, so a query is rotated once and
scored against the codes with a per-byte lookup table, whatever the widths.

Measured on SciFact MiniLM vectors (dim 384, 4,096 centroids): at 93 code bytes per token the
squared error of the residuals fell from 0.071 (2 bits everywhere, 96 bytes) to 0.054, and
Recall@10 of the exact top 10 over the decoded vectors rose from 0.922 to 0.951; Lloyd-Max
buckets took it to 0.959.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch

__all__ = [
    "GROUP",
    "WIDTHS",
    "ByteLayout",
    "allocate",
    "lloyd_buckets",
    "principal_axes",
    "quantile_buckets",
]

#: Coordinates per group: a group at width w fills exactly w bytes.
GROUP = 8
#: Bits per coordinate a group may get (each divides 8, so no value straddles two bytes).
WIDTHS = (0, 1, 2, 4, 8)
#: Columns of the cutoff / weight tables: enough for 8-bit coordinates.
MAX_LEVELS = 1 << max(WIDTHS)


def principal_axes(residuals: torch.Tensor) -> torch.Tensor:
    """``(dim, dim)`` orthogonal matrix whose columns are the principal axes of ``residuals``
    (uncentred: k-means residuals have mean ~0), by decreasing variance.

    Examples:
        >>> x = torch.randn(1000, 3) * torch.tensor([1.0, 5.0, 0.1])
        >>> p = principal_axes(x)
        >>> [int(i) for i in p.abs().argmax(dim=0)]
        [1, 0, 2]
        >>> bool(torch.allclose(p.T @ p, torch.eye(3), atol=1e-5))
        True
    """
    r = residuals.to(torch.float64)
    cov = (r.T @ r) / max(1, r.shape[0])
    values, vectors = torch.linalg.eigh(cov)
    order = torch.argsort(values, descending=True)
    axes = vectors[:, order]
    # eigh's signs are arbitrary: fix them so that the same sample gives the same codec.
    rows = axes.abs().argmax(dim=0)
    signs = torch.sign(axes[rows, torch.arange(axes.shape[1])])
    signs[signs == 0] = 1
    return (axes * signs).to(torch.float32).contiguous()


def _bucket_bounds(n: int, levels: int) -> list[int]:
    """Sample positions that split ``n`` sorted values into ``levels`` equal buckets."""
    return [0, *(min(n - 1, (n * j) // levels) for j in range(1, levels)), n]


def quantile_buckets(ordered: torch.Tensor, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Cutoffs ``(dim, 2**width - 1)`` and bucket means ``(dim, 2**width)`` of column-sorted
    samples ``ordered (n, dim)``: equal-count buckets, each decoded to the mean of its members.
    """
    n, levels = ordered.shape[0], 1 << width
    bounds = _bucket_bounds(n, levels)
    cutoffs = ordered[bounds[1:-1]].T.contiguous()
    means = [ordered[a : max(b, a + 1)].mean(dim=0) for a, b in itertools.pairwise(bounds)]
    return cutoffs, torch.stack(means, dim=1).contiguous()


def lloyd_buckets(
    ordered: torch.Tensor, width: int, iters: int = 10
) -> tuple[torch.Tensor, torch.Tensor]:
    """Like :func:`quantile_buckets`, then refined by Lloyd-Max iterations (1-D k-means per
    coordinate): cutoffs move to the midpoints between bucket values and values to the mean of
    their bucket. Equal-count buckets waste levels on the dense middle of a peaked
    distribution; Lloyd-Max spends them where the squared error is.

    Examples:
        >>> y = torch.sort(torch.randn(20000, 1), dim=0).values
        >>> _, q = quantile_buckets(y, 2)
        >>> _, l = lloyd_buckets(y, 2)
        >>> bool(l[0, 3] > q[0, 3])   # the outer levels move out (Gaussian optimum: 1.51)
        True
    """
    cutoffs, values = quantile_buckets(ordered, width)
    if width == 0 or ordered.shape[0] < 2:
        return cutoffs, values
    n = ordered.shape[0]
    cols = ordered.T.contiguous()  # (dim, n) sorted rows for searchsorted
    x = cols.to(torch.float64)
    prefix = torch.cat([torch.zeros(x.shape[0], 1, dtype=x.dtype), x.cumsum(1)], dim=1)
    vals = values.to(torch.float64)
    for _ in range(iters):
        cut = (vals[:, :-1] + vals[:, 1:]) / 2
        # bucket j holds cut[j-1] < x <= cut[j], as the encoder's left searchsorted assigns
        ends = torch.searchsorted(x, cut, right=True)
        bounds = torch.cat(
            [torch.zeros(x.shape[0], 1, dtype=torch.int64), ends, torch.full((x.shape[0], 1), n)],
            dim=1,
        )
        sums = prefix.gather(1, bounds[:, 1:]) - prefix.gather(1, bounds[:, :-1])
        counts = (bounds[:, 1:] - bounds[:, :-1]).to(x.dtype)
        vals = torch.where(counts > 0, sums / counts.clamp(min=1), vals)  # empty: keep
        vals = torch.sort(vals, dim=1).values
    cutoffs = ((vals[:, :-1] + vals[:, 1:]) / 2).to(torch.float32).contiguous()
    return cutoffs, vals.to(torch.float32).contiguous()


def _squared_errors(ordered: torch.Tensor, block: int = 64) -> dict[int, torch.Tensor]:
    """Per coordinate, the summed squared error of quantile buckets at each width (width 0:
    the value decodes to 0), from prefix sums of the sorted columns (``block`` columns at a
    time: the float64 prefix sums of all columns at once took ~1 GB at 65k x 384)."""
    n, dim = ordered.shape
    out = {w: torch.zeros(dim, dtype=torch.float64) for w in WIDTHS}
    for c in range(0, dim, block):
        x = ordered[:, c : c + block].to(torch.float64)
        s1 = torch.cat([torch.zeros(1, x.shape[1], dtype=x.dtype), x.cumsum(0)])
        s2 = torch.cat([torch.zeros(1, x.shape[1], dtype=x.dtype), (x * x).cumsum(0)])
        out[0][c : c + block] = s2[n]
        for width in WIDTHS[1:]:
            for a, b in itertools.pairwise(_bucket_bounds(n, 1 << width)):
                if b > a:
                    total = s1[b] - s1[a]
                    out[width][c : c + block] += (s2[b] - s2[a]) - total * total / (b - a)
    return out


def allocate(ordered: torch.Tensor, budget_bytes: int) -> tuple[int, ...]:
    """Widths (bits per coordinate) of each group of 8 coordinates, spending at most
    ``budget_bytes`` bytes per vector where they reduce the squared error most per byte.

    Args:
        ordered: ``(n, dim)`` the rotated training residuals, each column sorted.
        budget_bytes: code bytes per vector.

    Examples:
        >>> y = torch.randn(4000, 16) * torch.tensor([4.0] * 8 + [0.1] * 8)
        >>> allocate(torch.sort(y, dim=0).values, 4)   # the wide group gets the bytes
        (4, 0)
    """
    errors = _squared_errors(ordered)
    dim = ordered.shape[1]
    n_groups = -(-dim // GROUP)
    group_err = np.zeros((n_groups, len(WIDTHS)))
    for w_i, width in enumerate(WIDTHS):
        per_coord = errors[width].numpy()
        padded = np.zeros(n_groups * GROUP)
        padded[:dim] = per_coord
        group_err[:, w_i] = padded.reshape(n_groups, GROUP).sum(axis=1)
    state = np.zeros(n_groups, dtype=np.int64)  # index into WIDTHS
    spent = 0
    while True:
        best_gain, best_group = 0.0, -1
        for g in range(n_groups):
            if state[g] + 1 == len(WIDTHS):
                continue
            cost = WIDTHS[state[g] + 1] - WIDTHS[state[g]]
            if spent + cost > budget_bytes:
                continue
            gain = (group_err[g, state[g]] - group_err[g, state[g] + 1]) / cost
            if gain > best_gain:
                best_gain, best_group = gain, g
        if best_group < 0:
            return tuple(int(WIDTHS[s]) for s in state)
        spent += WIDTHS[state[best_group] + 1] - WIDTHS[state[best_group]]
        state[best_group] += 1


@dataclass(frozen=True)
class ByteLayout:
    """Where each coordinate's bits sit in a code.

    Group ``g`` (coordinates ``8g .. 8g + 7``) at width ``w`` fills ``w`` consecutive bytes;
    byte ``k`` of the group holds coordinates ``8g + k * 8 // w`` onwards, ``8 // w`` of them,
    low bits first. Coordinates of width-0 groups are not stored (they decode to 0).

    Attributes:
        dim: number of coordinates.
        widths: bits per coordinate of each group (``ceil(dim / 8)`` entries).
    """

    dim: int
    widths: tuple[int, ...]

    @property
    def n_bytes(self) -> int:
        return int(sum(self.widths))

    @cached_property
    def slots(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(coords, shifts, masks)``, each ``(n_bytes, 8)``: slot ``j`` of byte ``p`` holds
        coordinate ``coords[p, j]`` (``dim`` for an empty slot) in bits
        ``(byte >> shifts[p, j]) & masks[p, j]``."""
        coords = torch.full((self.n_bytes, GROUP), self.dim, dtype=torch.int64)
        shifts = torch.zeros((self.n_bytes, GROUP), dtype=torch.int64)
        masks = torch.zeros((self.n_bytes, GROUP), dtype=torch.int64)
        p = 0
        for g, width in enumerate(self.widths):
            if width == 0:
                continue
            per_byte = 8 // width
            for k in range(width):
                for j in range(per_byte):
                    coord = g * GROUP + k * per_byte + j
                    if coord < self.dim:
                        coords[p, j], shifts[p, j], masks[p, j] = coord, j * width, (1 << width) - 1
                p += 1
        return coords, shifts, masks

    def pack(self, levels: torch.Tensor) -> torch.Tensor:
        """``(n, n_bytes)`` uint8 codes of bucket numbers ``levels (n, dim)``."""
        coords, shifts, _ = self.slots
        # uint8 throughout: a slot's bits never overlap another's, so the sum is the OR and
        # fits a byte (int64 temporaries were 8x the memory, ~1 GB per 65k vectors at 384).
        padded = torch.cat(
            [levels.to(torch.uint8), torch.zeros((levels.shape[0], 1), dtype=torch.uint8)], 1
        )
        return (padded[:, coords] << shifts.to(torch.uint8)).sum(dim=2, dtype=torch.uint8)

    def value_table(self, weights: torch.Tensor) -> torch.Tensor:
        """``(n_bytes, 256, 8)``: the decoded value of each slot for every byte value, from
        bucket values ``weights (dim, MAX_LEVELS)``."""
        coords, shifts, masks = self.slots
        w = torch.cat([weights, torch.zeros((1, weights.shape[1]))])  # row dim: empty slots
        byte = torch.arange(256).view(1, 256, 1)
        levels = (byte >> shifts.unsqueeze(1)) & masks.unsqueeze(1)  # (n_bytes, 256, 8)
        return w[coords.unsqueeze(1).expand_as(levels), levels].contiguous()

    def unpack(self, packed: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """``(n, dim)`` decoded coordinates of codes ``packed (n, n_bytes)``, with
        ``values`` from :meth:`value_table`."""
        n = packed.shape[0]
        coords, _, _ = self.slots
        idx = packed.to(torch.int64) + torch.arange(self.n_bytes) * 256
        slot_values = values.view(-1, GROUP).index_select(0, idx.view(-1)).view(n, -1)
        out = torch.zeros((n, self.dim + 1))
        out.index_add_(1, coords.view(-1), slot_values)  # empty slots land in column dim
        return out[:, : self.dim]

    def query_table(self, rotated: torch.Tensor, values: torch.Tensor) -> torch.Tensor:
        """``(n_bytes * 256, t)``: ``q_i . y`` contribution of each byte position and value,
        for rotated query tokens ``rotated (t, dim)``."""
        coords, _, _ = self.slots
        t = rotated.shape[0]
        q = torch.cat([rotated.to(torch.float32), torch.zeros((t, 1))], dim=1)
        per_slot = q[:, coords].permute(1, 2, 0)  # (n_bytes, 8, t)
        return torch.bmm(values, per_slot).reshape(self.n_bytes * 256, t)
