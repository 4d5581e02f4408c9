"""Projection layers read from PyLate Dense folders and colbert-ai checkpoints."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

from colmax.encoders import load_encoder
from colmax.encoders.projection import DenseLayer, load_pylate_dense, load_stanford_linear
from colmax.errors import ModelLoadError
from tiny_models import make_tiny_colbert_model, tiny_projection


def _dense_folder(
    tmp_path: Path, config: dict, state: dict[str, torch.Tensor], bin_: bool = False
) -> Path:
    folder = tmp_path / "dense"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config))
    if bin_:
        torch.save(state, folder / "pytorch_model.bin")
    else:
        save_file(state, str(folder / "model.safetensors"))
    return folder


@pytest.mark.parametrize(
    ("name", "fn"),
    [
        ("torch.nn.modules.linear.Identity", lambda x: x),
        ("torch.nn.modules.activation.Tanh", torch.tanh),
        ("torch.nn.modules.activation.ReLU", torch.relu),
        ("torch.nn.Tanh", torch.tanh),
        (None, lambda x: x),
    ],
    ids=["identity", "tanh", "relu", "short-tanh", "none"],
)
def test_activation_and_bias(tmp_path: Path, name: str | None, fn) -> None:
    weight, bias = torch.randn(3, 4), torch.randn(3)
    config = {"in_features": 4, "out_features": 3, "bias": True, "activation_function": name}
    layer = load_pylate_dense(
        _dense_folder(tmp_path, config, {"linear.weight": weight, "linear.bias": bias})
    )
    x = torch.randn(5, 4)
    torch.testing.assert_close(layer(x), fn(x @ weight.T + bias))


@pytest.mark.parametrize(
    "name", ["os.system", "torch.nn.modules.activation.PReLU", "builtins.eval", 3], ids=str
)
def test_unknown_activation_is_refused(tmp_path: Path, name: object) -> None:
    config = {"in_features": 4, "out_features": 3, "bias": False, "activation_function": name}
    folder = _dense_folder(tmp_path, config, {"linear.weight": torch.randn(3, 4)})
    with pytest.raises(ModelLoadError, match="unsupported activation_function"):
        load_pylate_dense(folder)


def test_residual(tmp_path: Path) -> None:
    weight, residual = torch.randn(3, 4), torch.randn(3, 4)
    config = {
        "in_features": 4,
        "out_features": 3,
        "bias": False,
        "use_residual": True,
        "activation_function": "torch.nn.modules.linear.Identity",
    }
    folder = _dense_folder(tmp_path, config, {"linear.weight": weight, "residual.weight": residual})
    x = torch.randn(2, 4)
    torch.testing.assert_close(load_pylate_dense(folder)(x), x @ weight.T + x @ residual.T)
    same = DenseLayer(4, 4, bias=False, use_residual=True)
    torch.testing.assert_close(same(x), same.linear(x) + x)


def test_pytorch_bin_weights(tmp_path: Path) -> None:
    weight = torch.randn(3, 4)
    config = {
        "in_features": 4,
        "out_features": 3,
        "bias": False,
        "activation_function": "torch.nn.modules.linear.Identity",
    }
    layer = load_pylate_dense(_dense_folder(tmp_path, config, {"linear.weight": weight}, bin_=True))
    torch.testing.assert_close(layer.linear.weight.data, weight)


def test_weights_that_do_not_fit(tmp_path: Path) -> None:
    config = {
        "in_features": 4,
        "out_features": 3,
        "bias": False,
        "activation_function": "torch.nn.modules.linear.Identity",
    }
    folder = _dense_folder(tmp_path, config, {"linear.weight": torch.randn(3, 5)})
    with pytest.raises(ModelLoadError, match="do not fit"):
        load_pylate_dense(folder)


def test_dense_folder_without_weights(tmp_path: Path) -> None:
    folder = tmp_path / "dense"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"in_features": 4, "out_features": 3}))
    with pytest.raises(ModelLoadError, match="no weights"):
        load_pylate_dense(folder)


def test_pickled_object_in_bin_is_refused(tmp_path: Path) -> None:
    config = {"in_features": 4, "out_features": 3, "bias": False}
    folder = tmp_path / "dense"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(config))
    torch.save(
        {"linear.weight": torch.randn(3, 4), "extra": Path("x")}, folder / "pytorch_model.bin"
    )
    with pytest.raises(ModelLoadError, match="could not read the weights"):
        load_pylate_dense(folder)


def test_stanford_linear(tiny_colbert_model: Path) -> None:
    layer = load_stanford_linear(tiny_colbert_model)
    assert layer.linear.bias is None
    torch.testing.assert_close(layer.linear.weight.data, tiny_projection(0))


def test_stanford_bin_checkpoint_matches_safetensors(
    tiny_colbert_model: Path, tmp_path: Path
) -> None:
    folder = make_tiny_colbert_model(tmp_path / "bin", weights="bin")
    assert not (folder / "model.safetensors").exists()
    texts = ["the cat sat on the mat.", "hello"]
    a = load_encoder(tiny_colbert_model).encode_documents(texts)
    b = load_encoder(folder).encode_documents(texts)
    for x, y in zip(a, b, strict=True):
        torch.testing.assert_close(x, y)


def test_stanford_without_linear_weight(tiny_hf_model: Path, tmp_path: Path) -> None:
    folder = Path(shutil.copytree(tiny_hf_model, tmp_path / "m"))
    (folder / "artifact.metadata").write_text(json.dumps({"query_maxlen": 32}))
    with pytest.raises(ModelLoadError, match=r"linear\.weight"):
        load_encoder(folder)
