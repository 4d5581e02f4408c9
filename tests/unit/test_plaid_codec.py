"""ResidualCodec and k-means: error bounds, lookup-table scoring, files and their validation."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from colmax.errors import IndexFormatError
from colmax.indexes.plaid.codec import CODEC_DIR, ResidualCodec, code_bytes
from colmax.indexes.plaid.kmeans import assign, kmeans


def _clustered(n: int, dim: int, n_clusters: int, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    centers = torch.randn(n_clusters, dim, generator=gen)
    labels = torch.randint(0, n_clusters, (n,), generator=gen)
    x = centers[labels] + 0.4 * torch.randn(n, dim, generator=gen)
    return torch.nn.functional.normalize(x, dim=1)


@pytest.fixture(scope="module")
def sample() -> torch.Tensor:
    return _clustered(6000, 48, 40)


@pytest.fixture(scope="module", params=[2, 4], ids=["2bit", "4bit"])
def codec(request: pytest.FixtureRequest, sample: torch.Tensor) -> ResidualCodec:
    return ResidualCodec.train(sample, 64, request.param, iters=4, seed=1)


def test_assign_is_the_nearest_centroid() -> None:
    gen = torch.Generator().manual_seed(3)
    points, cents = torch.randn(500, 8, generator=gen), torch.randn(37, 8, generator=gen)
    brute = torch.cdist(points, cents).argmin(dim=1)
    assert torch.equal(assign(points, cents), brute)


def _inertia(points: torch.Tensor, cents: torch.Tensor) -> float:
    return float(((points - cents[assign(points, cents)]) ** 2).sum())


def test_kmeans_converges_to_cluster_means_and_uses_every_centroid() -> None:
    gen = torch.Generator().manual_seed(0)
    centers = torch.randn(8, 16, generator=gen) * 10
    points = centers.repeat_interleave(50, dim=0) + 0.1 * torch.randn(400, 16, generator=gen)
    cents = kmeans(points, 8, iters=10, seed=0)
    labels = assign(points, cents)
    assert torch.bincount(labels, minlength=8).min() > 0
    # a Lloyd fixed point: each centroid is the mean of the points assigned to it
    for c in range(8):
        torch.testing.assert_close(cents[c], points[labels == c].mean(dim=0))
    init = points[torch.randperm(400, generator=torch.Generator().manual_seed(0))[:8]]
    assert _inertia(points, cents) < _inertia(points, init)


def test_kmeans_reseeds_empty_clusters() -> None:
    # 3 distinct points, 3 centroids, initialised on duplicates: clusters start empty.
    points = torch.tensor([[0.0, 0.0]] * 10 + [[5.0, 0.0]] + [[0.0, 5.0]])
    cents = kmeans(points, 3, iters=5, seed=0)
    assert torch.bincount(assign(points, cents), minlength=3).min() > 0
    assert _inertia(points, cents) == pytest.approx(0.0, abs=1e-6)


def test_round_trip_error_bounds(codec: ResidualCodec, sample: torch.Tensor) -> None:
    codes, packed = codec.encode(sample)
    assert packed.dtype == torch.uint8
    assert packed.shape == (len(sample), code_bytes(48, codec.nbits) + 1)  # + the length byte
    residual = sample - codec.centroids[codes]
    err = codec.decode(codes, packed) - sample
    share = float((err**2).sum() / (residual**2).sum())
    # A 4-level (16-level) quantile quantiser keeps ~12% (~1%) of a Gaussian's energy as error;
    # allow slack for the skewed sample, but fail on a broken packing (error ~ 100%).
    assert share < (0.2 if codec.nbits == 2 else 0.04)
    # On each rotated axis that has bits, inside the training range, no value is further than
    # one bucket width from its decoded value (before the length factor).
    rotated = residual @ codec.rotation
    rotated_err = (codec.decode_residuals(packed) - residual) @ codec.rotation
    for g, width in enumerate(codec.widths):
        for axis in range(8 * g, min(48, 8 * g + 8)):
            if width == 0:
                assert torch.equal(rotated_err[:, axis], -rotated[:, axis])  # not stored
                continue
            levels = 1 << width
            w, cut = codec.weights[axis, :levels], codec.cutoffs[axis, : levels - 1]
            inside = (rotated[:, axis] >= w[0]) & (rotated[:, axis] <= w[-1])
            widest = float(torch.cat([w[:1], cut, w[-1:]]).diff().max())
            assert bool((rotated_err[inside, axis].abs() <= widest + 1e-5).all())


def test_length_byte_keeps_the_length_of_each_vector(
    codec: ResidualCodec, sample: torch.Tensor
) -> None:
    codes, packed = codec.encode(sample)
    lengths = codec.decode(codes, packed).norm(dim=1)
    step = (codec.scale.hi / codec.scale.lo) ** (1 / 255)  # one step of the log scale
    assert bool(((lengths - 1).abs() <= (step - 1) / 2 + 1e-5).all())
    unscaled = (codec.centroids[codes] + codec.decode_residuals(packed)).norm(dim=1)
    assert float((unscaled - 1).abs().mean()) > 10 * float((lengths - 1).abs().mean())


def test_bits_go_where_the_variance_is() -> None:
    gen = torch.Generator().manual_seed(2)
    spread = torch.linspace(1.0, 0.02, 48)  # residual variance decays across directions
    x = torch.randn(8, 48, generator=gen).repeat(500, 1) + spread * torch.randn(4000, 48)
    c2 = ResidualCodec.train(torch.nn.functional.normalize(x, dim=1), 8, 2, iters=4, seed=1)
    # principal axes come first, so the widths never increase from one group to the next
    assert list(c2.widths) == sorted(c2.widths, reverse=True)
    assert sum(c2.widths) == code_bytes(48, 2) and len(set(c2.widths)) > 1


def test_more_bits_less_error(sample: torch.Tensor) -> None:
    c2 = ResidualCodec.train(sample, 64, 2, iters=4, seed=1)
    c4 = ResidualCodec.train(sample, 64, 4, iters=4, seed=1)
    assert c4.stats.error_sq < 0.3 * c2.stats.error_sq
    assert c2.stats.residual_sq == pytest.approx(c4.stats.residual_sq)


def test_lookup_table_scores_equal_decoded_dot_products(codec: ResidualCodec) -> None:
    x = _clustered(300, 48, 40, seed=5)
    codes, packed = codec.encode(x)
    q = torch.nn.functional.normalize(torch.randn(7, 48), dim=1)
    table = codec.lookup_table(q)
    expected = codec.decode_residuals(packed) @ q.T
    torch.testing.assert_close(codec.score_residuals(packed, table), expected, atol=1e-5, rtol=0)


def test_odd_dimension_is_padded() -> None:
    x = _clustered(800, 13, 5)
    codec = ResidualCodec.train(x, 8, 2, iters=3)
    codes, packed = codec.encode(x)
    assert packed.shape == (800, code_bytes(13, 2) + 1)
    q = torch.randn(3, 13)
    torch.testing.assert_close(
        codec.score_residuals(packed, codec.lookup_table(q)),
        codec.decode_residuals(packed) @ q.T,
        atol=1e-5,
        rtol=0,
    )
    assert codec.decode(codes, packed).shape == (800, 13)


def test_write_read_round_trip(codec: ResidualCodec, tmp_path: Path) -> None:
    named = codec.named("codec-00000001-abcd0123")
    named.write(tmp_path)
    back = ResidualCodec.read(tmp_path, named.name, 48)
    assert torch.equal(back.centroids, codec.centroids)  # already float16-exact
    for part in ("rotation", "cutoffs", "weights"):
        assert torch.equal(getattr(back, part), getattr(codec, part))
    assert back.widths == codec.widths and back.scale == codec.scale
    assert back.nbits == codec.nbits and back.stats == codec.stats
    assert back.fingerprint == codec.fingerprint


def _write(codec: ResidualCodec, folder: Path) -> Path:
    codec.named("codec-00000001-00000000").write(folder)
    return folder / CODEC_DIR


@pytest.mark.parametrize(
    ("part", "damage"),
    [
        ("centroids", "missing"),
        ("centroids", "truncated"),
        ("centroids", "float32"),
        ("cutoffs", "descending"),
        ("weights", "nan"),
        ("rotation", "skewed"),
        ("widths", "three"),
        ("meta", "dim"),
        ("meta", "nbits"),
        ("meta", "pickle"),
    ],
)
def test_damaged_codec_files_raise_index_format_error(
    codec: ResidualCodec, tmp_path: Path, part: str, damage: str
) -> None:
    base = _write(codec, tmp_path)
    path = base / f"codec-00000001-00000000.{part}.npy"
    arr = np.load(path)
    if damage == "missing":
        path.unlink()
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:100])
    elif damage == "float32":
        np.save(path, arr.astype(np.float32))
    elif damage == "descending":
        np.save(path, arr[:, ::-1].copy())
    elif damage == "skewed":
        arr[:, 0] *= 2
        np.save(path, arr)
    elif damage == "three":
        arr[0] = 3
        np.save(path, arr)
    elif damage == "nan":
        arr[0, 0] = np.nan
        np.save(path, arr)
    elif damage == "dim":
        arr[2] = 47
        np.save(path, arr)
    elif damage == "nbits":
        arr[1] = 9
        np.save(path, arr)
    elif damage == "pickle":
        np.save(path, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(IndexFormatError, match=part if damage != "missing" else "missing"):
        ResidualCodec.read(tmp_path, "codec-00000001-00000000", 48)


def test_a_format_1_codec_asks_for_a_rebuild(codec: ResidualCodec, tmp_path: Path) -> None:
    base = _write(codec, tmp_path)
    path = base / "codec-00000001-00000000.meta.npy"
    np.save(path, np.array([1, 2, 48, 64, 6000, 0.1, 0.01, 6000], dtype=np.float64))
    with pytest.raises(IndexFormatError, match="format 1 .*build the index again"):
        ResidualCodec.read(tmp_path, "codec-00000001-00000000", 48)


def test_bad_nbits_is_refused(sample: torch.Tensor) -> None:
    with pytest.raises(ValueError, match="nbits"):
        ResidualCodec.train(sample[:100], 4, 9)
