"""Per-thread scratch buffers of the subset scoring paths."""

from __future__ import annotations

import threading

import numpy as np
import torch

from colmax.scoring import PackedDocuments
from colmax.scoring._scratch import KEEP_BYTES, scratch


def test_a_buffer_is_reused_per_thread_name_and_dtype() -> None:
    a = scratch("t1", (10, 4), torch.float32)
    b = scratch("t1", (3, 4), torch.float32)
    assert a.data_ptr() == b.data_ptr() and b.shape == (3, 4)
    assert scratch("t1", (10, 4), torch.float64).data_ptr() != a.data_ptr()
    assert scratch("t2", (10, 4), torch.float32).data_ptr() != a.data_ptr()
    grown = scratch("t1", (100, 4), torch.float32)  # larger: a new buffer, then kept
    assert scratch("t1", (50, 4), torch.float32).data_ptr() == grown.data_ptr()
    huge = KEEP_BYTES // 4 + 1  # float32 elements just over the limit: handed out, not kept
    first = scratch("t3", (huge,), torch.float32)
    assert first.numel() == huge
    assert scratch("t3", (1,), torch.float32).data_ptr() != first.data_ptr()
    other: list[int] = []
    thread = threading.Thread(
        target=lambda: other.append(scratch("t1", (3, 4), torch.float32).data_ptr())
    )
    thread.start()
    thread.join()
    assert other[0] != a.data_ptr()


def test_threads_scoring_subsets_at_once_get_their_own_answers() -> None:
    """Four threads re-rank different candidate sets of one corpus at the same time (each in
    its own scratch buffers): every answer equals the one computed alone."""
    rng = np.random.default_rng(0)
    lengths = rng.integers(1, 60, size=400)
    offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
    tokens = rng.standard_normal((int(offsets[-1]), 32)).astype(np.float16)
    docs = PackedDocuments.from_arrays(tokens, offsets)
    queries = [torch.from_numpy(rng.standard_normal((8, 32)).astype(np.float32)) for _ in range(4)]
    subsets = [rng.choice(400, 150, replace=False) for _ in range(4)]
    alone = [docs.score([q], s) for q, s in zip(queries, subsets)]
    tops = [docs.top_k([q], 5, s)[0] for q, s in zip(queries, subsets)]
    errors: list[str] = []

    def work(i: int) -> None:
        for _ in range(20):
            if not torch.equal(docs.score([queries[i]], subsets[i]), alone[i]):
                errors.append(f"score {i}")
            got = docs.top_k([queries[i]], 5, subsets[i])[0]
            if not np.array_equal(got.ids, tops[i].ids):
                errors.append(f"top_k {i}")

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
