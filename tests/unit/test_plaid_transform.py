"""Transform coding of residuals: rotation, bit allocation, byte layout and lookup tables."""

from __future__ import annotations

import pytest
import torch

from colmax.indexes.plaid.transform import (
    MAX_LEVELS,
    ByteLayout,
    allocate,
    principal_axes,
    quantile_buckets,
)


def _anisotropic(n: int, dim: int, seed: int = 0) -> torch.Tensor:
    """Correlated coordinates with a decaying spectrum, like real embedding residuals."""
    gen = torch.Generator().manual_seed(seed)
    scales = torch.linspace(2.0, 0.05, dim)
    mix, _ = torch.linalg.qr(torch.randn(dim, dim, generator=gen))
    return (torch.randn(n, dim, generator=gen) * scales) @ mix.T


@pytest.mark.parametrize("widths", [(1, 2, 4, 8), (4, 0, 2), (2, 2)])
def test_pack_then_unpack_gives_back_every_level(widths: tuple[int, ...]) -> None:
    dim = 8 * len(widths) - 3  # a last, partly empty group
    layout = ByteLayout(dim, widths)
    assert layout.n_bytes == sum(widths)
    gen = torch.Generator().manual_seed(0)
    per_axis = [widths[a // 8] for a in range(dim)]
    levels = torch.stack([torch.randint(0, 1 << w, (500,), generator=gen) for w in per_axis], dim=1)
    packed = layout.pack(levels)
    assert packed.shape == (500, sum(widths)) and packed.dtype == torch.uint8
    # decoding with "value = level" tables gives the levels back (width-0 axes: 0)
    weights = torch.arange(MAX_LEVELS, dtype=torch.float32).repeat(dim, 1)
    got = layout.unpack(packed, layout.value_table(weights))
    expect = levels.to(torch.float32) * torch.tensor([float(w > 0) for w in per_axis])
    assert torch.equal(got, expect)


def test_query_table_scores_equal_unpacked_dot_products() -> None:
    layout = ByteLayout(21, (4, 1, 2))
    gen = torch.Generator().manual_seed(1)
    weights = torch.randn(21, MAX_LEVELS, generator=gen)
    values = layout.value_table(weights)
    packed = torch.randint(0, 256, (300, layout.n_bytes), generator=gen, dtype=torch.uint8)
    q = torch.randn(5, 21, generator=gen)
    table = layout.query_table(q, values)
    idx = packed.to(torch.int64) + torch.arange(layout.n_bytes) * 256
    scores = torch.nn.functional.embedding_bag(idx, table, mode="sum")
    torch.testing.assert_close(scores, layout.unpack(packed, values) @ q.T, atol=1e-4, rtol=0)


def test_principal_axes_decorrelate() -> None:
    x = _anisotropic(20000, 16)
    y = x @ principal_axes(x)
    cov = (y.T @ y) / len(y)
    off = cov - torch.diag(torch.diag(cov))
    assert float(off.abs().max()) < 0.02 * float(cov.diag().max())
    assert bool((cov.diag()[:-1] >= cov.diag()[1:] - 1e-4).all())  # by decreasing variance


def test_allocation_beats_equal_bits_at_the_same_bytes() -> None:
    x = _anisotropic(20000, 32)
    y = x @ principal_axes(x)
    ordered = torch.sort(y, dim=0).values
    budget = 8  # 2 bits per coordinate on average

    def error(widths: tuple[int, ...]) -> float:
        total = 0.0
        for g, w in enumerate(widths):
            col = y[:, 8 * g : 8 * g + 8]
            if w == 0:
                total += float((col**2).sum())
                continue
            cut, val = quantile_buckets(ordered[:, 8 * g : 8 * g + 8], w)
            lev = torch.searchsorted(cut, col.T.contiguous()).T
            total += float(((col - torch.gather(val.T, 0, lev)) ** 2).sum())
        return total

    chosen = allocate(ordered, budget)
    assert sum(chosen) <= budget
    assert error(chosen) < 0.8 * error((2, 2, 2, 2))
