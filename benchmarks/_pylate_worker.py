"""Times PyLate's ``colbert_scores`` inside the peers' virtual environment (helper process).

Started by ``bench_maxsim.py`` with the peers' Python. It loads the corpus and queries the
parent wrote, pads the corpus the way PyLate's callers do, then answers one JSON line per
request on stdin: ``{"batch": 16, "save": "path.npy" | null}`` -> ``{"seconds": ...}``.
Interleaving these requests with the in-process methods keeps the A/B comparison fair.
"""

from __future__ import annotations

import itertools
import json
import sys
import time

import numpy as np
import torch
from pylate.scores import colbert_scores


def _padded(tokens: np.ndarray, offsets: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    lengths = np.diff(offsets)
    out = torch.zeros((lengths.size, int(lengths.max()), tokens.shape[1]), dtype=torch.float32)
    mask = torch.zeros(out.shape[:2], dtype=torch.float32)
    for i, (a, b) in enumerate(itertools.pairwise(offsets)):
        out[i, : b - a] = torch.from_numpy(tokens[a:b].astype(np.float32))
        mask[i, : b - a] = 1.0
    return out, mask


def main() -> None:
    folder = sys.argv[1]
    chunk_elements = int(sys.argv[2])
    tokens = np.load(f"{folder}/tokens.npy", mmap_mode="r")
    docs, mask = _padded(tokens, np.load(f"{folder}/offsets.npy"))
    queries = torch.from_numpy(np.load(f"{folder}/queries.npy"))
    print(json.dumps({"ready": True, "torch": torch.__version__}), flush=True)
    for line in sys.stdin:
        request = json.loads(line)
        q = queries[: request["batch"]]
        step = max(1, chunk_elements // (q.shape[0] * q.shape[1] * docs.shape[1]))
        start = time.perf_counter()
        parts = [
            colbert_scores(q, docs[a : a + step], documents_mask=mask[a : a + step])
            for a in range(0, docs.shape[0], step)
        ]
        scores = torch.cat(parts, dim=1)
        seconds = time.perf_counter() - start
        if request.get("save"):
            np.save(request["save"], scores.numpy())
        print(json.dumps({"seconds": seconds}), flush=True)


if __name__ == "__main__":
    main()
