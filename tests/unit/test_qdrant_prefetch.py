"""Pooled vectors for two-stage search: mean pooling and MUVERA fixed-dimensional encodings."""

from __future__ import annotations

import numpy as np
import pytest

from colmax.backends.qdrant.prefetch import PrefetchEncoding
from colmax.errors import InvalidInputError

DIM = 16


def unit(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.normal(size=(n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_mean_pooling_is_the_normalised_mean() -> None:
    x = unit(np.random.default_rng(0), 5)
    pooled = PrefetchEncoding.from_settings({"kind": "mean"}, DIM).documents([x])[0]
    np.testing.assert_allclose(pooled, x.mean(0) / np.linalg.norm(x.mean(0)), rtol=1e-6)
    cancel = np.stack([np.eye(DIM)[0], -np.eye(DIM)[0]]).astype(np.float32)
    assert np.isfinite(
        PrefetchEncoding.from_settings({"kind": "mean"}, DIM).queries([cancel])[0]
    ).all()


def test_muvera_single_vectors_approximate_the_dot_product() -> None:
    # One query vector against a one-vector document: the document fills every bucket with
    # its vector, the query sits in one bucket, so the encodings' dot product over ``reps``
    # repetitions is reps * q.P.P^T.d, whose expectation is reps * q.d.
    pool = PrefetchEncoding.from_settings(
        {"kind": "muvera", "reps": 256, "k_sim": 2, "d_proj": 16}, DIM
    )
    rng = np.random.default_rng(1)
    errors = []
    for _ in range(20):
        q, d = unit(rng, 1), unit(rng, 1)
        approx = float(pool.queries([q])[0] @ pool.documents([d])[0]) / 256
        errors.append(approx - float((q @ d.T)[0, 0]))
    assert abs(np.mean(errors)) < 0.02 and np.std(errors) < 0.05


def test_muvera_ranks_like_maxsim() -> None:
    rng = np.random.default_rng(2)
    docs = [unit(rng, int(rng.integers(2, 10))) for _ in range(150)]
    pool = PrefetchEncoding.from_settings({"kind": "muvera", "reps": 32}, DIM)
    encoded = np.stack(pool.documents(docs))
    corr = []
    for _ in range(10):
        q = unit(rng, 6)
        true = np.array([(q @ d.T).max(1).sum() for d in docs])
        corr.append(np.corrcoef(true, encoded @ pool.queries([q])[0])[0, 1])
    assert np.mean(corr) > 0.5  # random vectors would give ~0


def test_muvera_is_deterministic_per_seed() -> None:
    x = unit(np.random.default_rng(3), 7)
    a = PrefetchEncoding.from_settings({"kind": "muvera"}, DIM)
    b = PrefetchEncoding.from_settings({"kind": "muvera", "seed": 0}, DIM)
    c = PrefetchEncoding.from_settings({"kind": "muvera", "seed": 1}, DIM)
    np.testing.assert_array_equal(a.documents([x])[0], b.documents([x])[0])
    assert not np.array_equal(a.documents([x])[0], c.documents([x])[0])
    assert a.size == 8 * 16 * 16 and a.documents([x])[0].shape == (a.size,)
    assert a.settings == {"kind": "muvera", "k_sim": 4, "d_proj": 16, "reps": 8, "seed": 0}


@pytest.mark.parametrize(
    "settings",
    [
        {"kind": "max"},
        {"kind": "mean", "reps": 2},
        {"kind": "muvera", "k_sim": 0},
        {"kind": "muvera", "reps": 2.5},
        {"kind": "muvera", "depth": 2},
    ],
)
def test_bad_settings(settings: dict) -> None:
    with pytest.raises(InvalidInputError):
        PrefetchEncoding.from_settings(settings, DIM)
