"""``load_encoder(compile=True)``: same vectors as eager, and a clean fall-back when Inductor fails."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from colmax.encoders import load_encoder
from colmax.encoders.compiled import CompiledModel
from colmax.errors import InvalidInputError

TEXTS = [
    "the cat sat on the mat.",
    "hello",
    "what is the capital of france? paris, of course! " * 6,
    "a dog ran to the big red house; it was small.",
    "short one",
]


@pytest.mark.skipif(shutil.which("g++") is None, reason="Inductor on CPU needs a C++ compiler")
def test_compiled_encoder_matches_eager(tiny_pylate_model: Path) -> None:
    eager = load_encoder(tiny_pylate_model, device="cpu", dtype="float32")
    compiled = load_encoder(tiny_pylate_model, device="cpu", compile=True, dtype="float32")
    assert compiled.compiled and not eager.compiled
    assert "compiled=True" in repr(compiled)
    # Several batch shapes (sizes 2 and 3, then 1 for a single query) through one compiled graph.
    for batch_size in (2, 3):
        for got, want in zip(
            compiled.encode_documents(TEXTS, batch_size=batch_size),
            eager.encode_documents(TEXTS, batch_size=batch_size),
            strict=True,
        ):
            assert got.shape == want.shape
            torch.testing.assert_close(got, want, atol=1e-5, rtol=0)
    got_q = compiled.encode_queries(["what is late interaction?"])[0]
    want_q = eager.encode_queries(["what is late interaction?"])[0]
    torch.testing.assert_close(got_q, want_q, atol=1e-5, rtol=0)
    assert compiled.compiled  # no fall-back happened on the way
    assert "compile" not in compiled.config()  # a runtime choice, like the device


def test_compile_failure_falls_back_to_eager(tiny_pylate_model: Path) -> None:
    eager = load_encoder(tiny_pylate_model, device="cpu")
    encoder = load_encoder(tiny_pylate_model, device="cpu", compile=True)
    wrapper = encoder._run
    assert isinstance(wrapper, CompiledModel)

    def broken(**_: torch.Tensor) -> None:
        raise RuntimeError("no C++ compiler found")  # what Inductor raises is wrapped like this

    wrapper._compiled = broken
    with pytest.warns(RuntimeWarning, match="torch.compile failed.*no C\\+\\+ compiler"):
        got = encoder.encode_documents(TEXTS)
    assert not encoder.compiled
    for a, b in zip(got, eager.encode_documents(TEXTS), strict=True):
        torch.testing.assert_close(a, b, atol=0, rtol=0)


def test_compile_must_be_a_bool(tiny_pylate_model: Path) -> None:
    with pytest.raises(InvalidInputError, match="compile must be True or False"):
        load_encoder(tiny_pylate_model, device="cpu", compile="yes")
