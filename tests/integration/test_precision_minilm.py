"""Quality gate of the fast encoding paths on real data (MiniLM, SciFact and Cranfield).

A subset here (24 documents of each set, token cosine against float32); the full sets'
nDCG@10 against float32 is measured by ``benchmarks/bench_precision.py`` and recorded in
docs/benchmarks.md ("Precision"). Cranfield nDCG@10 with the default precision is checked on
the full set by test_cranfield.py (>= 0.376: float32's 0.378 minus the 0.002 gate).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from colmax.beir import load_beir
from colmax.encoders import load_encoder
from colmax.hardware import detect

N_DOCS = 24


@pytest.fixture(scope="module")
def texts(cranfield_dir: Path) -> list[str]:
    sets = [cranfield_dir, cranfield_dir.parent / "scifact"]
    out: list[str] = []
    for folder in sets:
        corpus = load_beir(folder).corpus
        out += [t for t in corpus.values() if t.strip()][:N_DOCS]
    return out


@pytest.fixture(scope="module")
def reference(minilm_path: Path, texts: list[str]) -> list[torch.Tensor]:
    return load_encoder(minilm_path, device="cpu", dtype="float32").encode_documents(texts)


def _cosines(got: list[torch.Tensor], want: list[torch.Tensor]) -> torch.Tensor:
    return torch.cat([(a * b).sum(dim=1) for a, b in zip(got, want, strict=True)])


def test_bfloat16_token_cosine(minilm_path: Path, texts: list[str], reference: list) -> None:
    if not detect().native_bf16:
        pytest.skip("bfloat16 is emulated on this CPU (10-50x slower); unit tests cover it")
    enc = load_encoder(minilm_path, device="cpu", dtype="bfloat16")
    cos = _cosines(enc.encode_documents(texts), reference)
    print(f"bf16 token cosine: mean {float(cos.mean()):.6f}, min {float(cos.min()):.5f}")
    assert float(cos.min()) >= 0.999


def test_int8_token_cosine(minilm_path: Path, texts: list[str], reference: list) -> None:
    enc = load_encoder(minilm_path, device="cpu", dtype="int8")
    cos = _cosines(enc.encode_documents(texts), reference)
    print(f"int8 token cosine: mean {float(cos.mean()):.6f}, min {float(cos.min()):.5f}")
    # Dynamic int8 (per-tensor activation scales) measured mean 0.907, min 0.63 on this
    # subset: far below the 0.999 gate, so it is never chosen automatically. A sanity floor.
    assert float(cos.mean()) >= 0.8


def test_onnx_runtime_queries_match_float32(minilm_path: Path, cranfield_dir: Path) -> None:
    """query_runtime="onnxruntime" on real queries: PyTorch's float32 vectors to within 1e-5."""
    pytest.importorskip("onnxruntime")
    queries = list(load_beir(cranfield_dir).queries.values())[:40]
    eager = load_encoder(minilm_path, device="cpu", dtype="float32")
    fast = load_encoder(minilm_path, device="cpu", dtype="float32", query_runtime="onnxruntime")
    got = [fast.encode_queries([q])[0] for q in queries]  # one at a time, as a search does
    want = eager.encode_queries(queries)
    cos = _cosines(got, want)
    worst = max(float((a - b).abs().max()) for a, b in zip(got, want, strict=True))
    print(f"onnxruntime query cosine: min {float(cos.min()):.7f}, largest difference {worst:.2g}")
    assert float(cos.min()) >= 0.99999
    assert worst <= 1e-5
