"""colmax.hardware: detection, the forcing variable, and `colmax doctor`."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from colmax.cli import main
from colmax.errors import InvalidInputError
from colmax.hardware import ENV_VAR, Hardware, detect, resolve_precision
from colmax.scoring import PackedDocuments


def test_detect_is_cached_and_consistent() -> None:
    hw = detect()
    assert detect() is hw
    assert isinstance(hw, Hardware) and hw.cpu_model
    assert hw.gflops["float32"] > 0
    # "native" needs the flag, oneDNN, float32 accumulation and a measured speed-up.
    if hw.native_bf16:
        assert hw.onednn_bf16 and hw.bf16_fp32_accumulation
        assert {"avx512_bf16", "amx_bf16"} & set(hw.cpu_flags)
        assert hw.gflops["bfloat16"] > hw.gflops["float32"]
    assert hw.precision("cpu") == ("bfloat16" if hw.native_bf16 else "float32")
    info = hw.to_dict()
    assert json.loads(json.dumps(info))["cpu_model"] == hw.cpu_model


def test_bf16_accumulation_check_runs_anywhere() -> None:
    from colmax.hardware import _bf16_accumulates_in_fp32

    assert isinstance(_bf16_accumulates_in_fp32(), bool)


@pytest.mark.parametrize("forced", ["float32", "bfloat16", "int8", "FLOAT32"])
def test_environment_variable_forces_a_path(monkeypatch: pytest.MonkeyPatch, forced: str) -> None:
    monkeypatch.setenv(ENV_VAR, forced)
    assert resolve_precision(None) == forced.lower()
    assert resolve_precision("auto") == forced.lower()
    assert resolve_precision("float32") == "float32"  # an explicit argument wins
    docs = PackedDocuments.from_arrays(np.eye(4, dtype=np.float16), [0, 2, 4])
    expected = {"float32": torch.float32, "bfloat16": torch.bfloat16, "int8": torch.int8}
    assert docs.compute_dtype == expected[forced.lower()]


def test_bad_precision_names(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(InvalidInputError, match="precision"):
        resolve_precision("fp8")
    monkeypatch.setenv(ENV_VAR, "half")
    with pytest.raises(InvalidInputError, match=ENV_VAR):
        resolve_precision(None)


def test_doctor_command(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("COLMAX_QUERY_RUNTIME", raising=False)
    assert main(["doctor"]) == 0
    text = capsys.readouterr().out
    assert "CPU:" in text and "chosen precision:" in text
    assert "exact search first pass:" in text
    monkeypatch.setenv(ENV_VAR, "float32")
    assert main(["doctor", "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["forced"] == "float32" and "native_bf16" in info
    assert info["search_first_pass"] == "float32"  # the forced path, for search too
    assert info["int8_packed_query_levels"] in (127, 63, None)
    assert info["query_runtime"] == "torch"
    monkeypatch.setenv("COLMAX_QUERY_RUNTIME", "onnxruntime")
    assert main(["doctor"]) == 0
    assert "query encoding: onnxruntime ($COLMAX_QUERY_RUNTIME;" in capsys.readouterr().out
    monkeypatch.setenv("COLMAX_QUERY_RUNTIME", "tensorrt")
    assert main(["doctor", "--json"]) == 0  # a bad value is reported, not a crash
    assert json.loads(capsys.readouterr().out)["query_runtime"].startswith("invalid")
