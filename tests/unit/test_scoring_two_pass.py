"""Two-pass exact top-k: a bfloat16 / int8 first pass, float32 re-scoring within the bound.

Every path runs on every host (forced by ``compute_dtype``): only the speed depends on the CPU.
"Exact" means: the ids, order and scores of exact MaxSim (the float64 reference loop) rounded
to float32, sorted by score descending then document number ascending.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from colmax.errors import InvalidInputError
from colmax.scoring import PackedDocuments, maxsim_loop
from colmax.scoring._kernel import float32_sims, plan_maxima
from colmax.scoring._layout import group_padded, plan_blocks
from colmax.scoring.lowp import (
    build_low_copy,
    first_pass,
    first_pass_precision,
    low_rows,
    query_stats,
    score_bounds,
)

PATHS = ["float32", "bfloat16", "int8"]


def _unit(x: np.ndarray) -> np.ndarray:
    return x / np.linalg.norm(x, axis=-1, keepdims=True)


def _corpus(seed: int, n_docs: int, max_len: int, dim: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, max_len + 1, size=n_docs)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    return _unit(rng.standard_normal((int(offsets[-1]), dim))).astype(np.float16), offsets


def _queries(seed: int, lengths: list[int], dim: int) -> list[torch.Tensor]:
    rng = np.random.default_rng(seed)
    return [
        torch.from_numpy(_unit(rng.standard_normal((n, dim))).astype(np.float32)) for n in lengths
    ]


def _exact32(tokens: np.ndarray, offsets: np.ndarray, queries: list, ids=None):  # type: ignore[no-untyped-def]
    """Exact MaxSim (the float64 reference loop) rounded to float32, and the columns."""
    cols = np.arange(len(offsets) - 1) if ids is None else np.asarray(ids)
    docs = [tokens[offsets[i] : offsets[i + 1]] for i in cols]
    return cols, maxsim_loop(queries, docs).astype(np.float32)


def _reference(cols: np.ndarray, scores: np.ndarray, k: int):  # type: ignore[no-untyped-def]
    """Sorted by score then document number; the k best plus ties with the k-th."""
    out = []
    for row in scores:
        order = np.lexsort((cols, -row))
        kth = row[order[min(k, len(order)) - 1]]
        keep = order[row[order] >= kth]
        out.append((cols[keep], row[keep]))
    return out


def _check_same(got, expected) -> None:  # type: ignore[no-untyped-def]
    assert len(got) == len(expected)
    for g, (ids, scores) in zip(got, expected):
        np.testing.assert_array_equal(g.ids, ids)
        np.testing.assert_array_equal(g.scores, scores)  # bit for bit


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("block_rows", [None, 7], ids=lambda b: f"rows{b}")
def test_top_k_equals_float32_exact(path: str, block_rows: int | None) -> None:
    tokens, offsets = _corpus(0, n_docs=300, max_len=40, dim=48)
    queries = _queries(1, [32, 3, 1, 20], dim=48)
    docs = PackedDocuments.from_arrays(tokens, offsets, compute_dtype=path)
    assert (
        docs.compute_dtype
        == {"float32": torch.float32, "bfloat16": torch.bfloat16, "int8": torch.int8}[path]
    )
    exact = _exact32(tokens, offsets, queries)
    for k in (1, 10) if block_rows else (1, 10, 299, 1000):
        got = docs.top_k(queries, k, block_rows=block_rows)
        _check_same(got, _reference(*exact, k))
    subset = [5, 17, 3, 250, 251, 99, 0]
    got = docs.top_k(queries, 3, subset, block_rows=block_rows)
    _check_same(got, _reference(*_exact32(tokens, offsets, queries, subset), 3))


@pytest.mark.parametrize("path", PATHS)
def test_adversarial_ties_and_near_ties(path: str) -> None:
    """Exact duplicates (ties across the k-th place) and documents one float16 step apart
    that no first pass can tell apart: the second pass must order them as float32 does."""
    rng = np.random.default_rng(3)
    dim = 32
    base = _unit(rng.standard_normal((6, dim))).astype(np.float16)
    near = base.copy()
    near[2, 0] = np.nextafter(near[2, 0], np.float16(2))  # one ulp away
    docs_list = (
        [base] * 15
        + [near] * 4
        + [_unit(rng.standard_normal((6, dim))).astype(np.float16) for _ in range(40)]
    )
    order = rng.permutation(len(docs_list))
    docs_list = [docs_list[i] for i in order]
    tokens = np.concatenate(docs_list)
    offsets = np.concatenate([[0], np.cumsum([len(d) for d in docs_list])]).astype(np.int64)
    queries = [
        torch.from_numpy(base[:3].astype(np.float32)),
        torch.from_numpy(near[1:4].astype(np.float32)),
    ]
    packed = PackedDocuments.from_arrays(tokens, offsets, compute_dtype=path)
    exact = _exact32(tokens, offsets, queries)
    for k in (1, 5, 15, 16, 19, 20):
        _check_same(packed.top_k(queries, k), _reference(*exact, k))


@pytest.mark.parametrize("block", [64, 16])
@pytest.mark.parametrize("path", ["bfloat16", "int8"])
def test_first_pass_error_is_within_its_bound(path: str, block: int) -> None:
    """|first-pass score - exact score| <= bound on hostile values: long vectors, negative
    similarities, components full of mantissa bits, float32 inputs; with the copy pre-packed
    where this machine packs it (blocks of 16 rows cut documents into pieces)."""
    rng = np.random.default_rng(4)
    dim = 40
    lengths = rng.integers(1, 30, size=200)
    n = int(lengths.sum())
    tokens = rng.standard_normal((n, dim)).astype(np.float32) * rng.uniform(0.1, 8, (n, 1))
    tokens[::7] = 1.0 + 2.0**-12 * rng.integers(0, 4096, (len(tokens[::7]), dim))
    tokens[1::5] *= -1
    padded = lengths.astype(np.int64)  # a layout with no padding: documents back to back
    matrix = torch.from_numpy(tokens)
    low = build_low_copy(matrix, padded, path, block)
    queries = [
        torch.from_numpy(rng.standard_normal((t, dim)).astype(np.float32)) for t in (32, 9, 1)
    ]
    stacked = torch.cat(queries)
    owner = torch.repeat_interleave(torch.arange(3), torch.tensor([32, 9, 1]))
    ind = torch.nn.functional.one_hot(owner, 3).float()
    q = query_stats(stacked, owner, 3, path, low.query_levels)
    plan = plan_blocks(padded, block)
    rows = low.packed if low.packed is not None else low.matrix
    res = first_pass(rows, plan, len(lengths), block, q, ind, low.scale)
    bound = score_bounds(low, torch.arange(len(lengths)), q, res[:, 3:], dim).numpy()
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    exact = maxsim_loop(queries, [tokens[offsets[i] : offsets[i + 1]] for i in range(len(lengths))])
    err = np.abs(res[:, :3].double().numpy() - exact.T)
    assert (err <= bound).all(), float((err - bound).max())
    # ... and it is not vacuous: a small fraction of the Cauchy-Schwarz scale of a score.
    scale = np.array([float(torch.linalg.vector_norm(q, dim=1).sum()) for q in queries])
    doc_norm = np.linalg.norm(tokens, axis=1).max()
    assert (bound < {"bfloat16": 0.02, "int8": 0.1}[path] * scale * doc_norm).all()


def test_top_k_checks_k_and_keeps_score_exact() -> None:
    tokens, offsets = _corpus(5, n_docs=20, max_len=5, dim=8)
    docs = PackedDocuments.from_arrays(tokens, offsets, compute_dtype="bfloat16")
    for bad in (0, -1, 2.5, True):
        with pytest.raises(InvalidInputError):
            docs.top_k(_queries(6, [2], 8), bad)
    exact = PackedDocuments.from_arrays(tokens, offsets, compute_dtype="float32")
    q = _queries(7, [4], 8)
    torch.testing.assert_close(docs.score(q), exact.score(q), rtol=0, atol=0)
    assert docs.top_k([], 3) == []
    assert docs.top_k(q, 3, doc_ids=[])[0].ids.size == 0


@pytest.mark.parametrize("rows_first", [False, True], ids=["query-first", "rows-first"])
@pytest.mark.parametrize("hold", [0, 1, 3, 10_000])
def test_held_maxima_equal_per_block_maxima(hold: int, rows_first: bool) -> None:
    """plan_maxima gathers the maxima of several blocks before yielding; every holding size
    (and the long documents scored in pieces) gives the same per-document maxima, with the
    similarities laid out query-first or rows-first."""
    rng = np.random.default_rng(8)
    lengths = np.sort(rng.integers(1, 12, size=60))
    lengths[-2:] = 30  # longer than a block: scored in pieces, yielded apart
    rows = torch.from_numpy(rng.standard_normal((int(lengths.sum()), 6)).astype(np.float32))
    q = torch.from_numpy(rng.standard_normal((5, 6)).astype(np.float32))
    plan = plan_blocks(lengths, 16)

    def maxima(hold_docs: int) -> torch.Tensor:
        got = torch.full((5, lengths.size), float("nan"))
        if rows_first:
            sims = float32_sims(rows, q)
        else:  # the low-precision kernels' layout, here with a float32 GEMM

            def sims(a: int, b: int, out: torch.Tensor) -> torch.Tensor:
                return torch.mm(q, rows[a:b].T, out=out)

        for d0, d1, best in plan_maxima(
            plan, 16, 5, sims, torch.float32, hold_docs, rows_first=rows_first
        ):
            got[:, d0:d1] = best
        return got

    # The same GEMMs whatever the holding: bit for bit the per-block result ...
    torch.testing.assert_close(maxima(hold), maxima(0), rtol=0, atol=0)
    # ... and the maxima of each document's own rows.
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    want = torch.stack(
        [(q @ rows[a : a + n].T).amax(dim=1) for a, n in zip(starts, lengths, strict=True)], 1
    )
    torch.testing.assert_close(maxima(hold), want, rtol=0, atol=1e-5)


@pytest.mark.parametrize("path", PATHS)
def test_subset_top_k_with_many_lengths_is_exact(path: str) -> None:
    """A gathered subset is padded into a few length groups (repeats of a real row): its
    maxima, so ids and scores, stay exact, with ties and every length different."""
    rng = np.random.default_rng(9)
    lengths = np.arange(1, 81)  # every document its own length
    base = _unit(rng.standard_normal((int(lengths.sum()), 16)))
    tokens = base.astype(np.float16)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    tokens[offsets[10] : offsets[11]] = tokens[offsets[70] - 11 : offsets[70]]  # 10 ties 69
    docs = PackedDocuments.from_arrays(tokens, offsets, compute_dtype=path)
    queries = _queries(10, [7, 1], 16)
    ids = [*rng.permutation(80)[:25].tolist(), 10, 69]  # under half the rows: gathered
    for k in (1, 3, 10):
        _check_same(
            docs.top_k(queries, k, ids),
            _reference(*_exact32(tokens, offsets, queries, np.unique(ids)), k),
        )


def test_group_padded_merges_neighbouring_lengths() -> None:
    lengths = np.array([1, 2, 3, 10, 10, 11, 40])
    out = group_padded(lengths, 0.25)
    assert (out >= lengths).all() and (np.diff(out) >= 0).all()
    assert np.unique(out).size < np.unique(lengths).size
    assert group_padded(np.zeros(0, np.int64), 0.25).size == 0


def test_automatic_first_pass_follows_the_hardware(monkeypatch: pytest.MonkeyPatch) -> None:
    from colmax.hardware import ENV_VAR, detect

    monkeypatch.delenv(ENV_VAR, raising=False)
    hw = detect()
    want = "bfloat16" if hw.native_bf16 else ("int8" if hw.native_int8 else "float32")
    assert first_pass_precision("auto") == want
    assert first_pass_precision("bfloat16") == "bfloat16"  # an explicit choice wins
    monkeypatch.setenv(ENV_VAR, "bfloat16")
    assert first_pass_precision("auto") == "bfloat16"
    monkeypatch.setenv(ENV_VAR, "auto")
    assert first_pass_precision("auto") == want


@pytest.mark.parametrize("path", ["bfloat16", "int8"])
def test_prepacked_rows_give_the_plain_gemm_bit_for_bit(path: str) -> None:
    """The oneDNN pre-packed copy (where this machine packs exactly) changes the layout, not
    one bit of the first pass: same scores and bounds as the plain row-major copy, documents
    longer than a block included."""
    rng = np.random.default_rng(11)
    dim = 48
    lengths = rng.integers(1, 40, size=120)
    lengths[[3, 60]] = 70  # longer than a 32-row block: scored in pieces
    tokens = _unit(rng.standard_normal((int(lengths.sum()), dim))).astype(np.float16)
    padded = lengths.astype(np.int64)
    matrix = torch.from_numpy(tokens)
    low = build_low_copy(matrix, padded, path, 32)
    if low.packed is None:
        pytest.skip(f"this CPU does not pack {path} rows exactly (the plain copy is used)")
    assert low.matrix is None  # the plain copy is dropped: no memory is spent twice
    scale = (
        None if low.scale is None else torch.repeat_interleave(low.scale, torch.from_numpy(padded))
    )
    plain = low_rows(matrix, path, scale)
    queries = _queries(12, [32, 5], dim)
    owner = torch.repeat_interleave(torch.arange(2), torch.tensor([32, 5]))
    ind = torch.nn.functional.one_hot(owner, 2).float()
    q = query_stats(torch.cat(queries), owner, 2, path, low.query_levels)
    plan = plan_blocks(padded, 32)
    assert plan.long_docs
    packed_res = first_pass(low.packed, plan, len(lengths), 32, q, ind, low.scale)
    plain_res = first_pass(plain, plan, len(lengths), 32, q, ind, low.scale)
    assert torch.equal(packed_res, plain_res)


def test_int8_as_float_gemm_sums_exactly_at_the_extremes() -> None:
    """The int8 similarities from a float32 GEMM of the widened integers (CPUs where
    ``torch._int_mm`` is slow) equal the int32 sums, at the largest dim it is used for and
    with every product at +-127 * 127."""
    from colmax.scoring._kernel import INT8_AS_FLOAT_MAX_DIM, int8_as_float_sims, int8_sims

    dim = INT8_AS_FLOAT_MAX_DIM
    rows = torch.full((8, dim), 127, dtype=torch.int8)
    rows[1::2] = -127
    rows[2, ::2] = -127  # sums that cancel to 0 on the way
    q = torch.full((32, dim), 127, dtype=torch.int8)
    q[3] = -127
    want = int8_sims(rows, q)(0, 8, torch.empty(0)).to(torch.int64)
    got = int8_as_float_sims(rows, q)(0, 8, torch.empty((8, 32)))  # rows first
    assert int(want.abs().max()) == 127 * 127 * dim
    assert torch.equal(got.T.to(torch.int64), want)


def test_seven_bit_query_integers_keep_top_k_exact(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where oneDNN's int8 GEMM is exact only with activations below 128 (AVX2 without VNNI:
    16-bit pair sums), queries round to 63 levels: the packed pass still sums exactly and the
    coarser rounding stays inside the bound, so top-k is float32-exact. Forced on any host."""
    import colmax.scoring._prepacked as prepacked

    monkeypatch.setattr(prepacked, "INT8_LEVELS", (63,))
    monkeypatch.setattr(prepacked, "_WORKS", {})
    tokens, offsets = _corpus(21, n_docs=150, max_len=30, dim=40)
    queries = _queries(22, [32, 3], dim=40)
    docs = PackedDocuments.from_arrays(tokens, offsets, compute_dtype="int8")
    low = docs._low
    assert low is not None
    if low.packed is None:
        pytest.skip("this CPU does not pack int8 rows exactly (the plain copy is used)")
    assert low.query_levels == low.packed.levels == 63
    owner = torch.zeros(32, dtype=torch.long)
    q = query_stats(queries[0], owner, 1, "int8", low.query_levels)
    assert int(q.tokens.abs().max()) == 63  # each token's largest entry maps to +-63
    for k in (1, 10):
        _check_same(docs.top_k(queries, k), _reference(*_exact32(tokens, offsets, queries), k))
    subset = [5, 140, 6, 0]
    got = docs.top_k(queries, 2, subset)
    _check_same(got, _reference(*_exact32(tokens, offsets, queries, subset), 2))


def test_int8_packing_uses_the_widest_exact_query_range() -> None:
    """The packed int8 GEMM is used with 127 levels only where it sums them exactly here
    (VNNI, AMX), else with 63 (AVX2 pair sums), else not at all: the probe decides, checked
    against the plain integer GEMM at the saturation extremes."""
    from colmax.scoring._prepacked import INT8_LEVELS, _packing_works, packed_levels

    levels = packed_levels("int8", 64)
    if levels == 0:
        assert not any(_packing_works("int8", 64, n) for n in INT8_LEVELS)
        return
    assert _packing_works("int8", 64, levels)
    wider = [n for n in INT8_LEVELS if n > levels]
    assert not any(_packing_works("int8", 64, n) for n in wider)


@pytest.mark.parametrize("path", PATHS)
def test_top_k_exact_with_small_prepacked_blocks(
    path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The whole-corpus pass in pre-packed blocks of 16 rows (documents cut into pieces), and
    filtered subsets rounded afresh from the exact copy: still float32-exact top-k."""
    import colmax.scoring.packed as packed_mod

    monkeypatch.setattr(packed_mod, "LOW_PACK_ROWS", 16)
    tokens, offsets = _corpus(13, n_docs=200, max_len=40, dim=24)
    queries = _queries(14, [20, 2], dim=24)
    docs = PackedDocuments.from_arrays(tokens, offsets, compute_dtype=path)
    for k in (1, 10):
        _check_same(docs.top_k(queries, k), _reference(*_exact32(tokens, offsets, queries), k))
    subset = [4, 150, 7, 199, 0, 33]
    got = docs.top_k(queries, 2, subset)
    _check_same(got, _reference(*_exact32(tokens, offsets, queries, subset), 2))


@pytest.mark.parametrize("path", PATHS)
def test_top_k_across_corpora_equals_top_k_of_their_union(path: str) -> None:
    """Several corpora (an index's segments) in one cascade: the same ids, order and scores
    as exact top-k over their union, ties across corpora included, with subsets and a corpus
    with nothing eligible."""
    from colmax.scoring.packed import top_k_across

    tokens, offsets = _corpus(21, n_docs=240, max_len=30, dim=32)
    docs = [tokens[offsets[i] : offsets[i + 1]] for i in range(240)]
    docs[100] = docs[5]  # a tie across corpora: document 5 (corpus 0) = document 100 (corpus 2)
    tokens = np.concatenate(docs)
    offsets = np.concatenate([[0], np.cumsum([len(d) for d in docs])]).astype(np.int64)
    cuts = [0, 70, 71, 240]  # a one-document corpus in the middle
    parts = [
        PackedDocuments.from_arrays(
            tokens[offsets[x] : offsets[y]], offsets[x : y + 1] - offsets[x], compute_dtype=path
        )
        for x, y in zip(cuts, cuts[1:])
    ]
    queries = [torch.from_numpy(docs[5][:3].astype(np.float32)), *_queries(22, [16], 32)]

    def check(got, expected, locals_to_global) -> None:  # type: ignore[no-untyped-def]
        assert len(got) == len(expected)
        for g, (ids, scores) in zip(got, expected):
            glob = np.array([locals_to_global(p, i) for p, i in zip(g.parts, g.ids)], dtype=int)
            np.testing.assert_array_equal(glob, ids)
            np.testing.assert_array_equal(g.scores, scores)

    exact = _exact32(tokens, offsets, queries)
    for k in (1, 10, 240):
        check(top_k_across(parts, queries, k), _reference(*exact, k), lambda p, i: cuts[p] + i)
    assert {100, 5} <= set(_reference(*exact, 1)[0][0].tolist())  # the tie is there
    subsets = [np.array([3, 5, 50]), np.array([], dtype=np.int64), None]
    union = np.concatenate([[3, 5, 50], np.arange(71, 240)])
    got = top_k_across(parts, queries, 4, subsets)
    check(got, _reference(*_exact32(tokens, offsets, queries, union), 4), lambda p, i: cuts[p] + i)
    with pytest.raises(InvalidInputError):
        top_k_across(parts, queries, 4, subsets[:2])
