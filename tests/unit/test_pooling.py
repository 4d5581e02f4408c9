"""colmax.pooling: target sizes, unit rows, Ward clusters against a naive Ward, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import colmax.pooling
from colmax.errors import InvalidEmbeddingError, InvalidInputError
from colmax.pooling import pool_documents, pool_vectors, pooled_length


def _unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    v = rng.normal(size=(n, dim))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _naive_ward(x: np.ndarray, k: int) -> list[np.ndarray]:
    """Textbook agglomerative Ward: merge the pair whose union adds the least squared error."""
    clusters = [[i] for i in range(len(x))]
    while len(clusters) > k:
        best, pair = math.inf, (0, 1)
        for a in range(len(clusters)):
            for b in range(a + 1, len(clusters)):
                ma, mb = x[clusters[a]].mean(0), x[clusters[b]].mean(0)
                na, nb = len(clusters[a]), len(clusters[b])
                cost = na * nb / (na + nb) * float(((ma - mb) ** 2).sum())
                if cost < best:
                    best, pair = cost, (a, b)
        a, b = pair
        clusters[a] = clusters[a] + clusters[b]
        del clusters[b]
    return [x[c].mean(0) for c in clusters]


def test_public_api_is_pinned() -> None:
    assert sorted(colmax.pooling.__all__) == [
        "pool_documents",
        "pool_vectors",
        "pool_with_rows",
        "pooled_length",
    ]


@settings(max_examples=40, deadline=None)
@given(n=st.integers(1, 60), factor=st.integers(1, 5), seed=st.integers(0, 2**16))
def test_size_is_ceil_n_over_factor_and_rows_are_unit(n: int, factor: int, seed: int) -> None:
    v = _unit(np.random.default_rng(seed), n, 8)
    pooled = pool_vectors(v, factor)
    assert pooled.shape == (math.ceil(n / factor), 8) == (pooled_length(n, factor), 8)
    assert pooled.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(pooled, axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize("n,k", [(8, 3), (12, 4), (15, 5), (20, 7)])
def test_clusters_are_wards_clusters(n: int, k: int) -> None:
    x = _unit(np.random.default_rng(n * 100 + k), n, 6)
    factor = math.ceil(n / k)
    target = math.ceil(n / factor)
    pooled = pool_vectors(x, factor)
    expected = np.array(_naive_ward(x, target))
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    key = lambda a: np.lexsort(a.T[::-1])  # noqa: E731 - sort rows for a set comparison
    np.testing.assert_allclose(pooled[key(pooled)], expected[key(expected)], atol=1e-5)


def test_tight_groups_collapse_to_their_centres() -> None:
    rng = np.random.default_rng(1)
    centres = _unit(rng, 3, 16)
    groups = [c + 0.01 * rng.normal(size=(4, 16)) for c in centres]
    x = np.concatenate(groups)[rng.permutation(12)]
    pooled = pool_vectors(x, 4)
    assert pooled.shape == (3, 16)
    assert (pooled @ centres.T).max(axis=0).min() > 0.999


def test_factor_one_keeps_every_vector_normalised() -> None:
    x = np.random.default_rng(2).normal(size=(7, 5)) * 3
    out = pool_vectors(x, 1)
    np.testing.assert_allclose(out, x / np.linalg.norm(x, axis=1, keepdims=True), rtol=1e-6)


def test_single_vector_and_protected_tokens() -> None:
    one = np.array([[0.0, 2.0]])
    np.testing.assert_allclose(pool_vectors(one, 3), [[0.0, 1.0]])
    x = _unit(np.random.default_rng(3), 11, 4)
    out = pool_vectors(x, 2, protected_tokens=1)
    assert out.shape == (1 + 5, 4) == (pooled_length(11, 2, 1), 4)
    np.testing.assert_allclose(out[0], x[0], rtol=1e-6)  # the [CLS] row survives untouched
    assert pool_vectors(x, 3, protected_tokens=20).shape == (11, 4)  # all protected


def test_duplicate_vectors_still_reach_the_target() -> None:
    x = np.tile(np.array([[1.0, 0.0, 0.0]]), (9, 1))
    x[7:] = [0.0, 1.0, 0.0]
    out = pool_vectors(x, 3)
    assert out.shape == (3, 3)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-6)


def test_opposite_vectors_never_give_a_zero_row() -> None:
    x = np.array([[1.0, 0.0], [-1.0, 0.0]])
    out = pool_vectors(x, 2)
    assert out.shape == (1, 2) and np.isclose(np.linalg.norm(out[0]), 1.0)


def test_torch_input_and_no_mutation() -> None:
    t = torch.tensor([[3.0, 4.0], [4.0, 3.0], [0.0, 5.0]])
    before = t.clone()
    out = pool_vectors(t, 2)
    assert out.shape == (2, 2)
    assert torch.equal(t, before)


def test_deterministic() -> None:
    x = _unit(np.random.default_rng(4), 40, 12)
    np.testing.assert_array_equal(pool_vectors(x, 2), pool_vectors(x, 2))


def test_pool_documents() -> None:
    rng = np.random.default_rng(5)
    docs = [_unit(rng, n, 4) for n in (1, 5, 9)]
    assert [p.shape[0] for p in pool_documents(docs, 2)] == [1, 3, 5]
    assert pool_documents([], 2) == []


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2", None])
def test_bad_factor(bad: object) -> None:
    with pytest.raises(InvalidInputError, match="pool_factor"):
        pool_vectors(np.eye(3), bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="pool_factor"):
        pool_documents([np.eye(3)], bad)  # type: ignore[arg-type]


def test_bad_protected_and_bad_vectors() -> None:
    with pytest.raises(InvalidInputError, match="protected_tokens"):
        pool_vectors(np.eye(3), 2, protected_tokens=-1)
    with pytest.raises(InvalidEmbeddingError):
        pool_vectors(np.array([[np.nan, 1.0]]), 2)
    with pytest.raises(InvalidEmbeddingError):
        pool_vectors(np.zeros((2, 3)), 2)
    with pytest.raises(InvalidEmbeddingError):
        pool_vectors(np.ones(3), 2)
