"""`PackedDocuments`: the flat index's exact kernel, against the float64 reference loop."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import colmax.scoring.packed as packed_module
from colmax.errors import DimensionMismatchError, InvalidEmbeddingError, InvalidInputError
from colmax.scoring import PackedDocuments, maxsim_loop, score_error_bound


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _corpus(
    seed: int, n_docs: int, max_len: int, dim: int, min_len: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Random unit token vectors stored float16, as the flat index stores them."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(min_len, max_len + 1, size=n_docs)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    tokens = _unit(rng.standard_normal((int(offsets[-1]), dim))).astype(np.float16)
    return tokens, offsets


def _split(tokens: np.ndarray, offsets: np.ndarray) -> list[np.ndarray]:
    return [tokens[offsets[i] : offsets[i + 1]] for i in range(len(offsets) - 1)]


def _queries(seed: int, lengths: list[int], dim: int) -> list[torch.Tensor]:
    rng = np.random.default_rng(seed)
    return [
        torch.from_numpy(_unit(rng.standard_normal((n, dim))).astype(np.float32)) for n in lengths
    ]


def _bound(queries: list[torch.Tensor], dim: int) -> np.ndarray:
    return np.array(
        [[score_error_bound(q.shape[0], dim, max_query_norm=1.0 + 1e-6)] for q in queries]
    )


@pytest.mark.parametrize("block_rows", [None, 1, 5, 64, 300], ids=lambda b: f"rows{b}")
def test_score_equals_reference_within_bound(block_rows: int | None) -> None:
    tokens, offsets = _corpus(0, n_docs=120, max_len=90, dim=32)
    queries = _queries(1, [32, 5, 1, 17], dim=32)
    docs = PackedDocuments.from_arrays(tokens, offsets)
    got = docs.score(queries, block_rows=block_rows)
    expected = maxsim_loop(queries, _split(tokens, offsets))
    assert got.shape == (4, 120) and got.dtype == torch.float32
    assert (np.abs(got.numpy() - expected) <= _bound(queries, 32)).all()


def test_score_negative_similarities_and_single_token_docs() -> None:
    queries = [q.abs() for q in _queries(2, [6, 3], dim=8)]  # all dots between them are >= 0
    docs_list = [-queries[0].numpy(), -queries[1].numpy()[:1], -queries[0].numpy()[2:3]]
    offsets = np.concatenate([[0], np.cumsum([len(d) for d in docs_list])])
    packed = PackedDocuments.from_arrays(np.concatenate(docs_list).astype(np.float16), offsets)
    expected = maxsim_loop(queries, [d.astype(np.float16) for d in docs_list])
    for block_rows in (None, 1, 2):
        got = packed.score(queries, block_rows=block_rows).numpy()
        assert (expected < 0).all()
        np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)


@pytest.mark.parametrize("block_rows", [None, 1, 3])
def test_one_document(block_rows: int | None) -> None:
    tokens, offsets = _corpus(3, n_docs=1, max_len=7, dim=4, min_len=7)
    queries = _queries(4, [3], dim=4)
    got = PackedDocuments.from_arrays(tokens, offsets).score(queries, block_rows=block_rows)
    np.testing.assert_allclose(got.numpy(), maxsim_loop(queries, [tokens]), rtol=0, atol=1e-5)


def test_many_queries_take_several_passes() -> None:
    tokens, offsets = _corpus(5, n_docs=40, max_len=30, dim=16)
    queries = _queries(6, [32] * 35 + [3], dim=16)  # 1123 tokens > MAX_QUERY_TOKENS_PER_PASS
    assert sum(q.shape[0] for q in queries) > packed_module.MAX_QUERY_TOKENS_PER_PASS
    got = PackedDocuments.from_arrays(tokens, offsets).score(queries)
    expected = maxsim_loop(queries, _split(tokens, offsets))
    assert (np.abs(got.numpy() - expected) <= _bound(queries, 16)).all()


@pytest.mark.parametrize("block_rows", [None, 7])
def test_subset_equals_full_restricted(block_rows: int | None) -> None:
    n = 200 if block_rows is None else 30  # block_rows=7 scores most docs in 7-row pieces
    tokens, offsets = _corpus(7, n_docs=n, max_len=40, dim=16)
    docs = PackedDocuments.from_arrays(tokens, offsets)
    queries = _queries(8, [32, 9], dim=16)
    full = docs.score(queries, block_rows=block_rows)
    # one doc; any order with repeats; a sparse third; three quarters (scored by a full pass)
    for ids in ([5], [n - 1, 0, 17, 17, 3], list(range(0, n, 3)), list(range(3 * n // 4)), []):
        got = docs.score(queries, np.array(ids, dtype=np.int64), block_rows=block_rows)
        assert got.shape == (2, len(ids))
        torch.testing.assert_close(got, full[:, ids], rtol=0, atol=1e-5)


def test_subset_accepts_lists_and_tensors() -> None:
    tokens, offsets = _corpus(9, n_docs=10, max_len=5, dim=4)
    docs = PackedDocuments.from_arrays(tokens, offsets)
    queries = _queries(10, [2], dim=4)
    torch.testing.assert_close(
        docs.score(queries, [1, 2]), docs.score(queries, torch.tensor([1, 2]))
    )


def _clustered(
    seed: int, n_docs: int, dim: int, n_queries: int
) -> tuple[np.ndarray, np.ndarray, list[torch.Tensor]]:
    """Tokens near a few shared centroids, so many documents compete closely for each query."""
    rng = np.random.default_rng(seed)
    centroids = _unit(rng.standard_normal((48, dim)))
    lengths = rng.integers(20, 121, size=n_docs)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    topic = rng.integers(0, 48, size=(n_docs, 4))  # each document mixes 4 topics
    which = topic[np.repeat(np.arange(n_docs), lengths), rng.integers(0, 4, size=offsets[-1])]
    tokens = _unit(
        centroids[which] + 0.35 * rng.standard_normal((offsets[-1], dim)) / np.sqrt(dim) * 4
    )
    queries = []
    for _ in range(n_queries):
        q_topics = rng.integers(0, 48, size=32)
        q = _unit(centroids[q_topics] + 0.35 * rng.standard_normal((32, dim)) / np.sqrt(dim) * 4)
        queries.append(torch.from_numpy(q.astype(np.float32)))
    return tokens.astype(np.float16), offsets, queries


def _ndcg_at_10(ranking: np.ndarray, gains: np.ndarray) -> float:
    discounts = 1.0 / np.log2(np.arange(2, 12))
    ideal = np.sort(gains)[::-1][:10]
    return float((gains[ranking[:10]] * discounts).sum() / (ideal * discounts).sum())


def test_clustered_top10_rankings_match_reference() -> None:
    tokens, offsets, queries = _clustered(11, n_docs=800, dim=128, n_queries=12)
    expected = maxsim_loop(queries, _split(tokens, offsets))
    got = PackedDocuments.from_arrays(tokens, offsets).score(queries).double().numpy()
    bound = score_error_bound(32, 128, max_query_norm=1.0 + 1e-6, max_doc_norm=1.0 + 1e-3)
    assert np.abs(got - expected).max() <= bound
    for row, (g, e) in enumerate(zip(got, expected, strict=True)):
        ours, ref = np.argsort(-g, kind="stable")[:10], np.argsort(-e, kind="stable")[:10]
        # Only a near-tie (exact scores closer than twice the bound) may swap places.
        assert np.all(np.abs(e[ours] - e[ref]) <= 2 * bound), f"query {row}"
        gains = np.maximum(e - np.sort(e)[-50], 0.0)  # graded relevance: the exact top 50
        assert _ndcg_at_10(ours, gains) == pytest.approx(_ndcg_at_10(ref, gains), abs=1e-9)


def test_error_bound_holds_for_non_unit_vectors() -> None:
    rng = np.random.default_rng(12)
    tokens = (rng.standard_normal((500, 64)) * 3).astype(np.float16)
    offsets = np.array([0, 100, 250, 251, 500])
    queries = [torch.from_numpy(rng.standard_normal((40, 64)) * 2)]  # float64, rounded
    got = PackedDocuments.from_arrays(tokens, offsets).score(queries).double().numpy()
    expected = maxsim_loop(queries, _split(tokens, offsets))
    bound = score_error_bound(
        40,
        64,
        max_query_norm=float(np.linalg.norm(queries[0].numpy(), axis=1).max()),
        max_doc_norm=float(np.linalg.norm(tokens.astype(np.float64), axis=1).max()),
    )
    assert np.abs(got - expected).max() <= bound


def test_error_bound_values_and_errors() -> None:
    assert score_error_bound(32, 128) == pytest.approx(3.09e-4, rel=1e-2)
    assert score_error_bound(1, 1, max_doc_norm=0.0) == 0.0
    assert score_error_bound(64, 128) > score_error_bound(32, 128)
    with pytest.raises(InvalidInputError):
        score_error_bound(0, 128)
    with pytest.raises(InvalidInputError):
        score_error_bound(32, 128, max_query_norm=float("nan"))


def test_inputs_memmap_and_torch_tensors(tmp_path) -> None:  # type: ignore[no-untyped-def]
    tokens, offsets = _corpus(13, n_docs=30, max_len=20, dim=8)
    np.save(tmp_path / "tokens.npy", tokens)
    mapped = np.load(tmp_path / "tokens.npy", mmap_mode="r")
    queries = _queries(14, [4, 8], dim=8)
    reference = PackedDocuments.from_arrays(tokens, offsets).score(queries)
    from_map = PackedDocuments.from_arrays(mapped, offsets).score(queries)
    from_torch = PackedDocuments.from_arrays(torch.from_numpy(tokens), torch.from_numpy(offsets))
    torch.testing.assert_close(from_map, reference, rtol=0, atol=0)
    torch.testing.assert_close(from_torch.score(queries), reference, rtol=0, atol=0)
    numpy_queries = [q.numpy().astype(np.float16) for q in queries]
    torch.testing.assert_close(from_torch.score(numpy_queries), reference, rtol=0, atol=2e-3)


@pytest.mark.parametrize("block_rows", [None, 3])
def test_float16_copy_gives_the_same_scores(block_rows: int | None) -> None:
    tokens, offsets = _corpus(19, n_docs=80, max_len=25, dim=16)
    queries = _queries(20, [32, 4], dim=16)
    wide = PackedDocuments.from_arrays(tokens, offsets, compute_dtype="float32")
    half = PackedDocuments.from_arrays(
        tokens, offsets, compute_dtype="float32", copy_dtype="float16"
    )
    assert half.copy_dtype == torch.float16 and half.compute_dtype == torch.float32
    assert half.nbytes < 0.6 * wide.nbytes
    for ids in (None, [3, 1, 77]):
        torch.testing.assert_close(
            half.score(queries, ids, block_rows=block_rows),
            wide.score(queries, ids, block_rows=block_rows),
            rtol=0,
            atol=1e-6,
        )


def test_float16_copy_rejects_values_it_cannot_hold() -> None:
    with pytest.raises(InvalidEmbeddingError):
        PackedDocuments.from_arrays(np.full((2, 2), 1e6, np.float32), [0, 2], copy_dtype="float16")
    with pytest.raises(InvalidInputError):
        PackedDocuments.from_arrays(np.ones((2, 2), np.float16), [0, 2], copy_dtype="bfloat16")


def test_sizes_and_empty_cases() -> None:
    tokens, offsets = _corpus(15, n_docs=12, max_len=9, dim=6)
    docs = PackedDocuments.from_arrays(tokens, offsets, compute_dtype="float32")
    assert (docs.n_docs, docs.n_tokens, docs.dim) == (12, int(offsets[-1]), 6)
    assert docs.compute_dtype == torch.float32
    assert docs.nbytes >= docs.n_tokens * 6 * 4
    assert "n_docs=12" in repr(docs)
    assert docs.score([]).shape == (0, 12)
    empty = PackedDocuments.from_arrays(np.zeros((0, 6), np.float16), [0])
    assert empty.n_docs == 0 and empty.score(_queries(16, [3], dim=6)).shape == (1, 0)


@pytest.mark.parametrize(
    ("tokens", "offsets", "kwargs", "error"),
    [
        (np.ones(6, np.float16), [0, 6], {}, InvalidEmbeddingError),
        (np.ones((6, 2), np.int32), [0, 6], {}, InvalidEmbeddingError),
        (np.full((6, 2), np.nan, np.float16), [0, 6], {}, InvalidEmbeddingError),
        (np.ones((6, 2), np.float16), [1, 6], {}, InvalidInputError),
        (np.ones((6, 2), np.float16), [0, 5], {}, InvalidInputError),
        (np.ones((6, 2), np.float16), [0, 3, 3, 6], {}, InvalidInputError),
        (np.ones((6, 2), np.float16), [[0, 6]], {}, InvalidInputError),
        (np.ones((6, 2), np.float16), [0.0, 6.0], {}, InvalidInputError),
        (np.ones((6, 2), np.float16), [0, 6], {"compute_dtype": "float8"}, InvalidInputError),
    ],
    ids=["1d", "int", "nan", "start", "end", "empty-doc", "2d-offsets", "float-offsets", "dtype"],
)
def test_from_arrays_rejects_bad_input(tokens, offsets, kwargs, error) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(error):
        PackedDocuments.from_arrays(tokens, offsets, **kwargs)


def test_score_rejects_bad_input() -> None:
    tokens, offsets = _corpus(17, n_docs=5, max_len=4, dim=4)
    docs = PackedDocuments.from_arrays(tokens, offsets)
    good = _queries(18, [2], dim=4)
    with pytest.raises(DimensionMismatchError):
        docs.score(_queries(18, [2], dim=5))
    with pytest.raises(InvalidEmbeddingError):
        docs.score([torch.ones(0, 4)])
    with pytest.raises(InvalidEmbeddingError):
        docs.score([torch.full((2, 4), float("inf"))])
    with pytest.raises(InvalidInputError):
        docs.score(torch.ones(2, 4))
    for bad_ids in ([5], [-1], [[0, 1]], [0.5]):
        with pytest.raises(InvalidInputError):
            docs.score(good, bad_ids)
    with pytest.raises(InvalidInputError):
        docs.score(good, block_rows=0)


@pytest.mark.parametrize("block_rows", [1, 7, 64, 10_000])
def test_block_plan_is_bounded_and_covers_every_document_once(block_rows: int) -> None:
    """The memory bound: no GEMM block holds more than `block_rows` token rows."""
    from colmax.scoring._layout import build_layout, plan_blocks

    lengths = np.random.default_rng(21).integers(1, 40, size=300)
    layout = build_layout(lengths, max_waste=1 / 32)
    assert (layout.padded_len >= np.sort(lengths)).all()
    assert layout.n_rows <= (1 + 1 / 32) * lengths.sum() + 1e-9
    plan = plan_blocks(layout.padded_len, block_rows)
    seen = []
    for blk in plan.blocks:
        assert blk.row1 - blk.row0 <= block_rows
        assert sum(c for _, _, c, _ in blk.segments) == blk.doc1 - blk.doc0
        seen.extend(range(blk.doc0, blk.doc1))
    for row, length, doc in plan.long_docs:
        assert length > block_rows and row == layout.row_start[doc]
        seen.append(doc)
    assert sorted(seen) == list(range(300))
