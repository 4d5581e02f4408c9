"""Per-thread scratch buffers for scoring subsets of documents (private).

Re-ranking 100 candidates, re-scoring after a first pass and filtered search gather a few
thousand rows, widen them and multiply: a few milliseconds of work. Fresh tensors for those
steps cost more than the work itself: buffers of tens of MB are fresh ``mmap`` pages each time
(the allocator returns them to the system when freed), and the first touch of every page
faults. On the host of ``docs/benchmarks.md`` gathering 24k rows of dim 384 (18 MB) took
8.2 ms into a fresh tensor and 1.8 ms into a reused one; widening them to float32 14 ms
against 1.8 ms.

So each thread keeps one buffer per purpose, grown on demand and reused by the next call; a
buffer larger than ``KEEP_BYTES`` is not kept (one huge request should not pin its memory).
Subsets are gathered 2**13 rows at a time, so at dim 384 a thread keeps about 40 MB (the
gathered rows, their float32 widening, their low-precision rounding, block maxima); the
buffers go with the thread (the server's reader threads end after a few idle seconds).
A buffer handed out is valid until the same thread asks for the same name again: callers use
it at once and never return it to their own callers.
"""

from __future__ import annotations

import math
import threading

import torch

__all__ = ["KEEP_BYTES", "scratch"]

#: Largest buffer kept per thread and name.
KEEP_BYTES = 16 << 20

_local = threading.local()


def scratch(name: str, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """An uninitialised contiguous tensor of ``shape``, reusing this thread's buffer ``name``
    of that dtype."""
    numel = math.prod(shape)
    bufs: dict[tuple[str, torch.dtype], torch.Tensor] | None = getattr(_local, "bufs", None)
    if bufs is None:
        bufs = _local.bufs = {}
    buf = bufs.get((name, dtype))
    if buf is None or buf.numel() < numel:
        buf = torch.empty(numel, dtype=dtype)
        if numel * buf.element_size() <= KEEP_BYTES:
            bufs[name, dtype] = buf
    return buf[:numel].view(shape)
