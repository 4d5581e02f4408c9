"""``query_runtime="onnxruntime"``: queries encoded by ONNX Runtime give PyTorch's vectors."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch

from colmax.encoders import load_encoder
from colmax.encoders.onnx_runtime import (
    ENV_VAR,
    OnnxRuntimeModel,
    onnxruntime_installed,
    resolve_query_runtime,
)
from colmax.errors import InvalidInputError, ModelLoadError

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")

QUERIES = [
    "what is late interaction?",
    "hello",
    "a much longer query about the capital of france, paris, and its history " * 2,
]


@pytest.mark.parametrize("fixture", ["tiny_pylate_model", "tiny_colbert_model", "tiny_hf_model"])
def test_onnx_queries_match_torch(fixture: str, request: pytest.FixtureRequest) -> None:
    path: Path = request.getfixturevalue(fixture)
    eager = load_encoder(path, device="cpu", dtype="float32")
    fast = load_encoder(path, device="cpu", dtype="float32", query_runtime="onnxruntime")
    assert fast.query_runtime == "onnxruntime" and eager.query_runtime == "torch"
    assert "query_runtime='onnxruntime'" in repr(fast)
    assert "query_runtime" not in fast.config()  # a runtime choice, like the device
    # One at a time (the latency case) and batched with padding (other lengths per batch).
    for batch_size in (1, 3):
        got = fast.encode_queries(QUERIES, batch_size=batch_size)
        want = eager.encode_queries(QUERIES, batch_size=batch_size)
        for a, b in zip(got, want, strict=True):
            assert a.shape == b.shape and a.dtype == torch.float32
            torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    # Documents keep PyTorch: bitwise the eager encoder's.
    docs = ["the cat sat on the mat.", "hello world"]
    for a, b in zip(fast.encode_documents(docs), eager.encode_documents(docs), strict=True):
        assert torch.equal(a, b)
    # The exported graph has its own copy of the weights: the torch model is left in eval mode.
    assert not fast.model.training


def test_environment_variable_picks_the_runtime(
    tiny_pylate_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_VAR, "onnxruntime")
    assert load_encoder(tiny_pylate_model, device="cpu", dtype="float32").query_runtime == (
        "onnxruntime"
    )
    # An explicit argument wins over the environment.
    explicit = load_encoder(tiny_pylate_model, device="cpu", query_runtime="torch")
    assert explicit.query_runtime == "torch"


def test_environment_variable_is_ignored_where_it_cannot_apply(
    tiny_pylate_model: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(ENV_VAR, "onnxruntime")
    with caplog.at_level(logging.WARNING):
        encoder = load_encoder(tiny_pylate_model, device="cpu", dtype="bfloat16")
    assert encoder.query_runtime == "torch"
    assert f"{ENV_VAR}=onnxruntime ignored" in caplog.text


@pytest.mark.parametrize("dtype", ["bfloat16", "int8"])
def test_explicit_request_that_cannot_apply_is_an_error(
    tiny_pylate_model: Path, dtype: str
) -> None:
    with pytest.raises(InvalidInputError, match=f"float32 weights on the CPU.*runs in {dtype}"):
        load_encoder(tiny_pylate_model, device="cpu", dtype=dtype, query_runtime="onnxruntime")


def test_auto_takes_onnx_runtime_where_it_applies(tiny_pylate_model: Path) -> None:
    assert load_encoder(
        tiny_pylate_model, device="cpu", dtype="float32", query_runtime="auto"
    ).query_runtime == ("onnxruntime" if onnxruntime_installed() else "torch")
    # bfloat16 weights: PyTorch, without a word (auto never errs).
    bf16 = load_encoder(tiny_pylate_model, device="cpu", dtype="bfloat16", query_runtime="auto")
    assert bf16.query_runtime == "torch"


def test_a_failed_export_falls_back_unless_asked_for(
    tiny_pylate_model: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """The loader's fall-back: an export refused by its check (simulated here; the check
    itself is tested below) leaves "auto" on PyTorch, and fails an explicit request."""

    def refuse(self: OnnxRuntimeModel, model: object, sample: object) -> None:
        raise ModelLoadError("the ONNX export of this model computes other vectors")

    monkeypatch.setattr(OnnxRuntimeModel, "_check", refuse)
    with caplog.at_level(logging.WARNING):
        auto = load_encoder(tiny_pylate_model, device="cpu", dtype="float32", query_runtime="auto")
    assert auto.query_runtime == "torch" and "queries stay on PyTorch" in caplog.text
    assert auto.encode_queries(["hello"])[0].shape[0] > 0
    with pytest.raises(ModelLoadError, match="computes other vectors"):
        load_encoder(tiny_pylate_model, device="cpu", dtype="float32", query_runtime="onnxruntime")


@pytest.mark.parametrize("bad", ["onnx", "tensorrt", "", 3])
def test_unknown_runtime_is_rejected(bad: object, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(InvalidInputError, match="query_runtime must be one of"):
        resolve_query_runtime(bad)  # type: ignore[arg-type]
    if isinstance(bad, str) and bad:
        monkeypatch.setenv(ENV_VAR, bad)
        with pytest.raises(InvalidInputError, match=f"{ENV_VAR} must be one of"):
            resolve_query_runtime(None)
    assert resolve_query_runtime("ONNXRuntime") == "onnxruntime"
    assert resolve_query_runtime("auto") == "auto"


def test_the_environment_wins_over_the_default_and_an_argument_over_both(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv(ENV_VAR, raising=False)
    assert resolve_query_runtime(None) == "torch"
    assert resolve_query_runtime(None, default="auto") == "auto"
    monkeypatch.setenv(ENV_VAR, "torch")
    assert resolve_query_runtime(None, default="auto") == "torch"
    assert resolve_query_runtime("onnxruntime", default="auto") == "onnxruntime"


def test_a_mistraced_export_is_refused(tiny_pylate_model: Path) -> None:
    """A model whose Python code branches on input values traces that branch only: the check
    against PyTorch catches the export that would compute other vectors."""
    encoder = load_encoder(tiny_pylate_model, device="cpu", dtype="float32")

    class Branchy(torch.nn.Module):
        def __init__(self, inner: torch.nn.Module) -> None:
            super().__init__()
            self.inner = inner

        def forward(self, **inputs: torch.Tensor) -> tuple[torch.Tensor]:
            hidden = self.inner(**inputs)[0]
            if inputs["input_ids"].shape[0] > 1:  # traced as a constant: True for the sample
                hidden = hidden * 2
            return (hidden,)

    plan = encoder.plan
    sample = plan.collate(plan.prepare(["sample", "a longer sample text"], is_query=False))
    with pytest.raises(ModelLoadError, match="computes other vectors than PyTorch"):
        OnnxRuntimeModel(Branchy(encoder.model).eval(), sample)


def test_vision_encoders_refuse_it(tiny_colpali_model: Path) -> None:
    with pytest.raises(InvalidInputError, match="text encoders only"):
        load_encoder(tiny_colpali_model, device="cpu", query_runtime="onnxruntime")
