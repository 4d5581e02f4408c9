"""CodedSegment: coding, decoding, merging, files and their validation; inverted lists."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from colmax.errors import IndexFormatError
from colmax.indexes.plaid.codec import ResidualCodec, code_bytes
from colmax.indexes.plaid.ivf import InvertedLists
from colmax.indexes.plaid.segment import CodedSegment, is_coded_name
from colmax.store.segments import SEGMENT_DIR, Segment

DIM = 24


def _docs(n_docs: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((30, DIM))
    out = []
    for _ in range(n_docs):
        n = int(rng.integers(1, 30))
        x = centers[rng.integers(0, 30, n)] + 0.3 * rng.standard_normal((n, DIM))
        out.append((x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32))
    return out


@pytest.fixture(scope="module")
def docs() -> list[np.ndarray]:
    return _docs(300, 0)


@pytest.fixture(scope="module")
def codec(docs: list[np.ndarray]) -> ResidualCodec:
    sample = torch.from_numpy(np.concatenate(docs))
    return ResidualCodec.train(sample, 32, 2, iters=4).named("codec-00000001-aaaaaaaa")


@pytest.fixture(scope="module")
def segment(docs: list[np.ndarray], codec: ResidualCodec) -> CodedSegment:
    return CodedSegment.build(1, np.arange(100, 400, dtype=np.int64), docs, codec)


def test_build_codes_every_token_in_document_order(
    segment: CodedSegment, docs: list[np.ndarray], codec: ResidualCodec
) -> None:
    assert is_coded_name(segment.name) and segment.n_docs == 300
    assert segment.n_tokens == sum(len(d) for d in docs)
    assert segment.codes.dtype == np.uint16 and segment.residuals.shape == (
        segment.n_tokens,
        codec.n_bytes,
    )
    for i in (0, 17, 299):
        dec = segment.vectors(i)
        assert dec.shape == docs[i].shape
        expect = codec.decode(*codec.encode(torch.from_numpy(docs[i])))
        np.testing.assert_allclose(dec, expect.numpy(), atol=1e-6)
        assert np.linalg.norm(dec - docs[i], axis=1).mean() < 0.25
    assert segment.residual_sq > segment.error_sq > 0


def test_from_exact_segment_equals_build(
    segment: CodedSegment, docs: list[np.ndarray], codec: ResidualCodec
) -> None:
    exact = Segment.build(1, np.arange(100, 400, dtype=np.int64), docs, DIM)
    alive = np.ones(300, dtype=bool)
    alive[[3, 50]] = False
    coded = CodedSegment.from_segment(2, exact, alive, codec)
    assert coded.n_docs == 298 and list(coded.keys[:4]) == [100, 101, 102, 104]
    # float16 storage rounds the inputs; codes agree almost everywhere
    ref = CodedSegment.build(2, exact.keys[alive], [d for d, a in zip(docs, alive) if a], codec)
    assert np.mean(coded.codes == ref.codes) > 0.99


def test_merge_keeps_live_documents_without_recoding(
    segment: CodedSegment, codec: ResidualCodec
) -> None:
    other = CodedSegment.build(2, np.array([7, 8], dtype=np.int64), _docs(2, 9), codec)
    alive = np.zeros(300, dtype=bool)
    alive[[0, 299]] = True
    merged = CodedSegment.merge(3, [segment, other], [alive, np.array([False, True])])
    assert merged.keys.tolist() == [100, 399, 8]
    np.testing.assert_array_equal(merged.vectors(1), segment.vectors(299))
    np.testing.assert_array_equal(merged.vectors(2), other.vectors(1))


def test_write_read_round_trip(segment: CodedSegment, codec: ResidualCodec, tmp_path: Path) -> None:
    segment.write(tmp_path)
    back = CodedSegment.read(tmp_path, segment.name, segment.n_docs, segment.n_tokens, codec)
    assert isinstance(back.residuals, np.memmap)
    for part in ("codes", "residuals", "offsets", "keys"):
        np.testing.assert_array_equal(getattr(back, part), getattr(segment, part))
    assert back.residual_sq == segment.residual_sq
    on_disk = sum(f.stat().st_size for f in (tmp_path / SEGMENT_DIR).iterdir())
    per_token = (on_disk - 5 * 128 - 16 * (segment.n_docs + 1) - 56) / segment.n_tokens
    # centroid id (2) + residual code bytes + the length byte
    assert per_token == pytest.approx(2 + code_bytes(DIM, 2) + 1, abs=0.01)
    CodedSegment.remove_files(tmp_path, segment.name)
    assert not any((tmp_path / SEGMENT_DIR).iterdir())


@pytest.mark.parametrize(
    ("part", "damage"),
    [
        ("codes", "missing"),
        ("codes", "out_of_range"),
        ("codes", "int64"),
        ("residuals", "truncated"),
        ("residuals", "short"),
        ("offsets", "decreasing"),
        ("keys", "float"),
        ("meta", "codec"),
        ("meta", "format"),
    ],
)
def test_damaged_files_raise_index_format_error(
    segment: CodedSegment, codec: ResidualCodec, tmp_path: Path, part: str, damage: str
) -> None:
    segment.write(tmp_path)
    path = tmp_path / SEGMENT_DIR / f"{segment.name}.{part}.npy"
    arr = np.load(path)
    if damage == "missing":
        path.unlink()
    elif damage == "out_of_range":
        arr[5] = 32
        np.save(path, arr)
    elif damage == "int64":
        np.save(path, arr.astype(np.int64))
    elif damage == "truncated":
        path.write_bytes(path.read_bytes()[:-10])
    elif damage == "short":
        np.save(path, arr[:-1])
    elif damage == "decreasing":
        arr[1], arr[2] = arr[2], arr[1]
        np.save(path, arr)
    elif damage == "float":
        np.save(path, arr.astype(np.float64))
    elif damage == "codec":
        arr[1] += 1
        np.save(path, arr)
    elif damage == "format":
        arr[0] = 1  # development versions: rows without the length byte
        np.save(path, arr)
    with pytest.raises(IndexFormatError, match=segment.name):
        CodedSegment.read(tmp_path, segment.name, segment.n_docs, segment.n_tokens, codec)


def test_counts_must_match_the_database(
    segment: CodedSegment, codec: ResidualCodec, tmp_path: Path
) -> None:
    segment.write(tmp_path)
    with pytest.raises(IndexFormatError, match="damaged coded segment"):
        CodedSegment.read(tmp_path, segment.name, segment.n_docs, segment.n_tokens + 1, codec)


def test_inverted_lists_hold_each_document_once_per_centroid(segment: CodedSegment) -> None:
    ivf = InvertedLists.build(segment.codes, segment.offsets, 32)
    expect: dict[int, set[int]] = {}
    for d in range(segment.n_docs):
        for c in segment.codes[segment.offsets[d] : segment.offsets[d + 1]]:
            expect.setdefault(int(c), set()).add(d)
    assert ivf.n_pairs == sum(len(v) for v in expect.values())
    for c in range(32):
        got = ivf.docs[ivf.list_offsets[c] : ivf.list_offsets[c + 1]].tolist()
        assert got == sorted(expect.get(c, set()))


def test_document_pairs_list_each_distinct_centroid_with_its_first_token(
    segment: CodedSegment,
) -> None:
    ivf = InvertedLists.build(segment.codes, segment.offsets, 32)
    assert int(ivf.doc_pair_offsets[-1]) == ivf.n_pairs
    for d in range(segment.n_docs):
        a, b = int(segment.offsets[d]), int(segment.offsets[d + 1])
        first: dict[int, int] = {}
        for row in range(a, b):
            first.setdefault(int(segment.codes[row]), row)
        lo, hi = int(ivf.doc_pair_offsets[d]), int(ivf.doc_pair_offsets[d + 1])
        assert ivf.doc_pair_cents[lo:hi].tolist() == sorted(first)
        assert ivf.doc_pair_rows[lo:hi].tolist() == [first[c] for c in sorted(first)]
