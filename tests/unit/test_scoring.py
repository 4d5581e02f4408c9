"""Padded and ragged MaxSim (`maxsim`, `maxsim_ragged`) against the float64 reference loop."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import colmax.scoring
from colmax.errors import DimensionMismatchError, InvalidEmbeddingError, InvalidInputError
from colmax.scoring import maxsim, maxsim_loop, maxsim_ragged

TOL = 1e-4  # float32 vs float64 on small random inputs (norms ~ sqrt(dim))


def _ragged(rng: np.random.Generator, n: int, max_len: int, dim: int) -> list[torch.Tensor]:
    return [
        torch.from_numpy(rng.standard_normal((int(rng.integers(1, max_len + 1)), dim))).float()
        for _ in range(n)
    ]


def _pad(xs: list[torch.Tensor], fill: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad with a *large* value, so any pad that leaks into the max or the sum is caught."""
    longest = max(x.shape[0] for x in xs)
    out = torch.full((len(xs), longest, xs[0].shape[1]), fill)
    mask = torch.zeros((len(xs), longest), dtype=torch.bool)
    for i, x in enumerate(xs):
        out[i, : x.shape[0]] = x
        mask[i, : x.shape[0]] = True
    return out, mask


def test_public_names_are_pinned() -> None:
    assert sorted(colmax.scoring.__all__) == [
        "PackedDocuments",
        "maxsim",
        "maxsim_loop",
        "maxsim_ragged",
        "score_error_bound",
    ]


def test_reference_loop_known_answer() -> None:
    q = [np.array([[1.0, 0.0], [0.0, 1.0]]), np.array([[0.0, -1.0]])]
    d = [np.array([[1.0, 0.0]]), np.array([[0.6, 0.8], [-1.0, 0.0]])]
    np.testing.assert_allclose(maxsim_loop(q, d), [[1.0, 1.4], [0.0, 0.0]])


def test_reference_loop_rejects_bad_input() -> None:
    with pytest.raises(DimensionMismatchError):
        maxsim_loop([np.ones((2, 3))], [np.ones((2, 4))])
    with pytest.raises(InvalidEmbeddingError):
        maxsim_loop([np.ones((0, 3))], [np.ones((2, 3))])


@pytest.mark.parametrize("seed", range(8))
@pytest.mark.parametrize("normalize", ["sum", "mean"])
def test_maxsim_padded_equals_loop(seed: int, normalize: str) -> None:
    rng = np.random.default_rng(seed)
    dim = int(rng.integers(1, 24))
    queries, docs = _ragged(rng, 5, 9, dim), _ragged(rng, 11, 13, dim)
    q, q_mask = _pad(queries, fill=50.0)
    d, d_mask = _pad(docs, fill=50.0)
    expected = maxsim_loop(queries, docs)
    if normalize == "mean":
        expected = expected / np.array([[x.shape[0]] for x in queries])
    got = maxsim(q, d, q_mask, d_mask, normalize=normalize)
    assert got.shape == (5, 11) and got.dtype == torch.float32
    np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=TOL)


@pytest.mark.parametrize("block_elements", [1, 7, 1 << 22], ids=["tiny", "odd", "default"])
def test_maxsim_all_negative_similarities(block_elements: int) -> None:
    """docs = -queries: every similarity of a real pair is <= 0, so zeroed pads would win."""
    rng = np.random.default_rng(1)
    queries = [x.abs() for x in _ragged(rng, 3, 6, 8)]
    docs = [-x for x in queries] + [-x[:1] for x in queries]
    q, q_mask = _pad(queries, fill=0.0)
    d, d_mask = _pad(docs, fill=0.0)
    got = maxsim(q, d, q_mask, d_mask, block_elements=block_elements)
    expected = maxsim_loop(queries, docs)
    assert (expected < 0).all()
    np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=TOL)


def test_maxsim_without_masks_and_in_float64() -> None:
    rng = np.random.default_rng(2)
    q = torch.from_numpy(rng.standard_normal((3, 4, 6)))
    d = torch.from_numpy(rng.standard_normal((5, 7, 6)))
    got = maxsim(q, d)
    assert got.dtype == torch.float64
    np.testing.assert_allclose(got.numpy(), maxsim_loop(list(q), list(d)), rtol=0, atol=1e-12)


def test_maxsim_half_inputs_are_widened() -> None:
    rng = np.random.default_rng(3)
    q = torch.from_numpy(rng.standard_normal((2, 4, 16))).half()
    d = torch.from_numpy(rng.standard_normal((3, 5, 16))).bfloat16()
    got = maxsim(q, d)
    assert got.dtype == torch.float32
    np.testing.assert_allclose(got.numpy(), maxsim_loop(list(q), list(d)), rtol=0, atol=TOL)


def test_maxsim_document_without_real_tokens_scores_minus_inf() -> None:
    q = torch.ones((1, 2, 3))
    d = torch.ones((2, 2, 3))
    got = maxsim(q, d, d_mask=torch.tensor([[True, True], [False, False]]))
    assert got[0, 0] == pytest.approx(6.0) and got[0, 1] == float("-inf")


def test_maxsim_empty_batches() -> None:
    assert maxsim(torch.ones((0, 2, 3)), torch.ones((4, 2, 3))).shape == (0, 4)
    assert maxsim(torch.ones((2, 2, 3)), torch.ones((0, 2, 3))).shape == (2, 0)


@pytest.mark.parametrize(
    ("q", "d", "kwargs", "error"),
    [
        (torch.ones(2, 3), torch.ones(1, 2, 3), {}, InvalidEmbeddingError),
        (torch.ones(1, 2, 3), torch.ones(2, 3), {}, InvalidEmbeddingError),
        (torch.ones(1, 0, 3), torch.ones(1, 2, 3), {}, InvalidEmbeddingError),
        (torch.ones(1, 2, 3), torch.ones(1, 2, 4), {}, DimensionMismatchError),
        (torch.ones(1, 2, 3), torch.ones(1, 2, 3), {"normalize": "max"}, InvalidInputError),
        (torch.ones(1, 2, 3), torch.ones(1, 2, 3), {"block_elements": 0}, InvalidInputError),
        (torch.ones(1, 2, 3), torch.ones(1, 2, 3), {"d_mask": torch.ones(1, 3).bool()}, InvalidInputError),
        (torch.ones(1, 2, 3), torch.ones(1, 2, 3), {"d_mask": torch.ones(1, 2)}, InvalidInputError),
        (torch.ones(1, 2, 3), torch.ones(1, 2, 3), {"q_mask": torch.zeros(1, 2).bool()}, InvalidInputError),
        (torch.ones(1, 2, 3, dtype=torch.int64), torch.ones(1, 2, 3), {}, InvalidEmbeddingError),
        (torch.full((1, 2, 3), float("nan")), torch.ones(1, 2, 3), {}, InvalidEmbeddingError),
        (torch.ones(1, 2, 3), torch.full((1, 2, 3), float("nan")), {}, InvalidEmbeddingError),
        (torch.ones(1, 2, 3), torch.full((1, 2, 3), float("inf")), {}, InvalidEmbeddingError),
    ],
    ids=[
        "q-2d", "d-2d", "q-no-tokens", "dim-mismatch", "normalize", "block", "mask-shape",
        "mask-dtype", "query-all-padding", "int-dtype", "q-nan", "d-nan", "d-inf",
    ],
)  # fmt: skip
def test_maxsim_rejects_bad_input(q, d, kwargs, error) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(error):
        maxsim(q, d, **kwargs)


def test_maxsim_ignores_nan_in_padding() -> None:
    d = torch.tensor([[[1.0, 0.0], [float("nan"), 0.0]]])
    got = maxsim(torch.tensor([[[1.0, 0.0]]]), d, d_mask=torch.tensor([[True, False]]))
    assert got.item() == pytest.approx(1.0)


@pytest.mark.parametrize("normalize", ["sum", "mean"])
@pytest.mark.parametrize("block_elements", [1, 1 << 22], ids=["tiny", "default"])
def test_maxsim_ragged_equals_loop(normalize: str, block_elements: int) -> None:
    rng = np.random.default_rng(4)
    queries, docs = _ragged(rng, 4, 10, 12), _ragged(rng, 17, 30, 12)
    docs[3] = -queries[0]  # an all-negative pair
    expected = maxsim_loop(queries, docs)
    if normalize == "mean":
        expected = expected / np.array([[x.shape[0]] for x in queries])
    got = maxsim_ragged(queries, docs, normalize=normalize, block_elements=block_elements)
    np.testing.assert_allclose(got.numpy(), expected, rtol=0, atol=TOL)


def test_maxsim_ragged_accepts_numpy_and_empty_lists() -> None:
    docs = [np.ones((2, 3), dtype=np.float16)]
    assert maxsim_ragged([np.ones((1, 3))], docs).item() == pytest.approx(3.0)
    assert maxsim_ragged([], docs).shape == (0, 1)
    assert maxsim_ragged([torch.ones(1, 3)], []).shape == (1, 0)


def test_maxsim_ragged_rejects_bad_input() -> None:
    with pytest.raises(DimensionMismatchError):
        maxsim_ragged([torch.ones(1, 3)], [torch.ones(1, 4)])
    with pytest.raises(DimensionMismatchError):
        maxsim_ragged([torch.ones(1, 3)], [torch.ones(1, 3), torch.ones(1, 4)])
    with pytest.raises(InvalidEmbeddingError):
        maxsim_ragged([torch.ones(0, 3)], [torch.ones(1, 3)])
    with pytest.raises(InvalidEmbeddingError):
        maxsim_ragged([torch.ones(3)], [torch.ones(1, 3)])
    with pytest.raises(InvalidInputError):
        maxsim_ragged(torch.ones(2, 3), [torch.ones(1, 3)])
    with pytest.raises(InvalidInputError):
        maxsim_ragged([torch.ones(1, 3)], [torch.ones(1, 3)], normalize="avg")  # type: ignore[arg-type]


@st.composite
def _ragged_case(draw: st.DrawFn) -> tuple[list[np.ndarray], list[np.ndarray]]:
    dim = draw(st.integers(1, 6))
    values = st.floats(-4, 4, allow_nan=False, width=32)

    def matrix() -> st.SearchStrategy[np.ndarray]:
        return st.integers(1, 5).flatmap(
            lambda n: st.lists(values, min_size=n * dim, max_size=n * dim).map(
                lambda v: np.array(v, dtype=np.float32).reshape(n, dim)
            )
        )

    return draw(st.lists(matrix(), min_size=1, max_size=3)), draw(
        st.lists(matrix(), min_size=1, max_size=4)
    )


@settings(max_examples=60, deadline=None)
@given(case=_ragged_case(), negate=st.booleans())
def test_maxsim_property_matches_loop(case, negate: bool) -> None:  # type: ignore[no-untyped-def]
    queries, docs = case
    if negate:
        docs = [-d for d in docs]
    expected = maxsim_loop(queries, docs)
    ragged = maxsim_ragged(queries, docs).numpy()
    q, q_mask = _pad([torch.from_numpy(x) for x in queries], fill=9.0)
    d, d_mask = _pad([torch.from_numpy(x) for x in docs], fill=9.0)
    padded = maxsim(q, d, q_mask, d_mask).numpy()
    np.testing.assert_allclose(ragged, expected, rtol=1e-5, atol=1e-4)
    np.testing.assert_allclose(padded, expected, rtol=1e-5, atol=1e-4)
