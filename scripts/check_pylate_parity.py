"""Compare colmax's token vectors with the reference dumps of ``scripts/make_checkpoints.py``.

Run in colmax's own environment, after ``make_checkpoints.py`` ran in the peer one::

    .venv/bin/python scripts/check_pylate_parity.py --dir runs/parity

For every dump (``pylate``, ``stanford`` (PyLate loading the colbert-ai checkpoint), the
variants with non-default settings and, when present, ``stanford_colbertai`` (colbert-ai's own
encoder)) it loads the recorded folder with :func:`colmax.encoders.load_encoder` and the
recorded settings, encodes the same queries and documents, and reports per
kind: whether every text has the same token count, whether the kept token ids agree, and the
largest absolute difference between corresponding vector components. Exit status 1 when a
PyLate dump differs by more than ``--atol`` or in token counts (colbert-ai's own dump is
informational: it tokenizes unstripped text and splits the literal markers differently).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from colmax.encoders import load_encoder

_DUMPS = (
    "pylate",
    "stanford",
    "pylate_attend",
    "pylate_no_expansion",
    "stanford_short",
    "stanford_colbertai",
)


def _compare(name: str, root: Path, *, batch_size: int) -> dict[str, dict[str, object]]:
    record = json.loads((root / f"{name}.json").read_text(encoding="utf-8"))
    encoder = load_encoder(
        root / record["folder"], device="cpu", batch_size=batch_size, **record["overrides"]
    )
    report: dict[str, dict[str, object]] = {}
    for kind in ("queries", "documents"):
        texts = record[kind]
        ours = (encoder.encode_queries if kind == "queries" else encoder.encode_documents)(texts)
        counts = [int(v.shape[0]) for v in ours]
        theirs_counts = record[f"{kind}_counts"]
        flat = np.load(root / f"{name}_{kind}.npy", allow_pickle=False)
        theirs = np.split(flat, np.cumsum(theirs_counts)[:-1])
        ids = [
            [p.input_ids[k] for k in p.keep]
            for p in encoder.plan.prepare(texts, is_query=kind == "queries")
        ]
        diffs = [
            float(np.abs(o.numpy() - t).max())
            for o, t, c, tc in zip(ours, theirs, counts, theirs_counts, strict=True)
            if c == tc
        ]
        report[kind] = {
            "texts": len(texts),
            "same_counts": sum(c == t for c, t in zip(counts, theirs_counts, strict=True)),
            "same_ids": sum(a == b for a, b in zip(ids, record[f"{kind}_ids"], strict=True)),
            "tokens_colmax": sum(counts),
            "tokens_reference": sum(theirs_counts),
            "max_abs_diff": max(diffs) if diffs else None,
            "mismatched_texts": [
                i for i, (c, t) in enumerate(zip(counts, theirs_counts, strict=True)) if c != t
            ],
        }
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dir", type=Path, default=Path("runs/parity"))
    parser.add_argument("--atol", type=float, default=1e-4)
    parser.add_argument("--batch-size", type=int, default=32)
    args = parser.parse_args()
    failed = False
    for name in _DUMPS:
        if not (args.dir / f"{name}.json").is_file():
            print(f"{name}: no dump, skipped")
            continue
        report = _compare(name, args.dir, batch_size=args.batch_size)
        for kind, row in report.items():
            print(f"{name:20s} {kind:9s} {json.dumps(row)}")
            if name == "stanford_colbertai":
                continue
            diff = row["max_abs_diff"]
            if row["same_counts"] != row["texts"] or diff is None or diff > args.atol:
                failed = True
    print("FAIL" if failed else "OK: colmax matches PyLate")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
