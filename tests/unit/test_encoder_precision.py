"""Encoder precision: every path on any host (forced), float32 outputs, config round trips."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from colmax.encoders import load_encoder
from colmax.encoders.precision import resolve_encoder_precision
from colmax.errors import InvalidInputError
from colmax.hardware import ENV_VAR, detect

TEXTS = ["the cat sat on the mat.", "what is the capital of france?", "hello world"]


@pytest.mark.parametrize("dtype", ["bfloat16", "int8"])
def test_each_precision_gives_float32_unit_vectors_close_to_float32(
    tiny_pylate_model: Path, dtype: str
) -> None:
    ref = load_encoder(tiny_pylate_model, device="cpu", dtype="float32")
    enc = load_encoder(tiny_pylate_model, device="cpu", dtype=dtype)
    assert enc.precision == dtype and enc.config()["dtype"] == dtype
    assert f"precision={dtype!r}" in repr(enc)
    for encode, encode_ref in (
        (enc.encode_documents, ref.encode_documents),
        (enc.encode_queries, ref.encode_queries),
    ):
        for got, want in zip(encode(TEXTS), encode_ref(TEXTS), strict=True):
            assert got.dtype == torch.float32 and got.shape == want.shape
            torch.testing.assert_close(got.norm(dim=1), torch.ones(len(got)), atol=1e-5, rtol=0)
            assert float((got * want).sum(dim=1).min()) > 0.98  # a tiny random model


@pytest.mark.parametrize("forced", ["float32", "bfloat16", "int8"])
def test_environment_variable_picks_the_automatic_precision(
    tiny_hf_model: Path, monkeypatch: pytest.MonkeyPatch, forced: str
) -> None:
    monkeypatch.setenv(ENV_VAR, forced)
    enc = load_encoder(tiny_hf_model, device="cpu")
    assert enc.precision == forced
    assert enc.config()["dtype"] is None  # still "automatic" on the next machine
    assert load_encoder(tiny_hf_model, device="cpu", dtype="float32").precision == "float32"


def test_automatic_precision_follows_the_hardware(tiny_hf_model: Path) -> None:
    enc = load_encoder(tiny_hf_model, device="cpu", dtype="auto")
    assert enc.precision == detect().precision("cpu")
    assert enc.config()["dtype"] is None


def test_precision_errors() -> None:
    with pytest.raises(InvalidInputError, match="CPU only"):
        resolve_encoder_precision("int8", torch.device("cuda"))
    with pytest.raises(InvalidInputError, match="dtype"):
        resolve_encoder_precision("int4", torch.device("cpu"))
    assert resolve_encoder_precision(torch.bfloat16, torch.device("cpu")).name == "bfloat16"
