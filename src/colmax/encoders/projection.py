"""Projection layers applied to every token vector: PyLate ``Dense`` modules, colbert-ai ``linear``.

Weights are read from ``model.safetensors`` or, failing that, ``pytorch_model.bin`` with
``torch.load(weights_only=True)``, which refuses to unpickle anything but tensors.
Activation functions are looked up in a fixed table, never imported from the string a file
holds.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import load_file
from torch import nn

from colmax.errors import ModelLoadError
from colmax.torch_load import safe_torch_load

__all__ = ["DenseLayer", "Projection", "load_pylate_dense", "load_stanford_linear"]

logger = logging.getLogger(__name__)

# Activations a sentence-transformers / PyLate Dense config may name (``fullname`` of the
# module, e.g. "torch.nn.modules.activation.Tanh", or the short "torch.nn.Tanh").
_ACTIVATIONS: dict[str, type[nn.Module]] = {
    "Identity": nn.Identity,
    "Tanh": nn.Tanh,
    "ReLU": nn.ReLU,
    "GELU": nn.GELU,
    "Sigmoid": nn.Sigmoid,
    "SiLU": nn.SiLU,
    "LeakyReLU": nn.LeakyReLU,
    "ELU": nn.ELU,
    "Softplus": nn.Softplus,
    "Mish": nn.Mish,
    "Hardtanh": nn.Hardtanh,
}
_ACTIVATION_MODULES = ("torch.nn.", "torch.nn.modules.linear.", "torch.nn.modules.activation.")


def _activation(name: Any, source: Path) -> nn.Module:
    if name is None:
        return nn.Identity()  # sentence-transformers: None means no activation.
    if isinstance(name, str):
        module, _, cls = name.rpartition(".")
        if module + "." in _ACTIVATION_MODULES and cls in _ACTIVATIONS:
            return _ACTIVATIONS[cls]()
    raise ModelLoadError(
        f"{str(source)!r}: unsupported activation_function {name!r}; "
        f"supported: torch.nn.{{{', '.join(_ACTIVATIONS)}}}"
    )


class DenseLayer(nn.Module):
    """``activation(linear(x))``, plus ``x`` (or ``residual(x)``) when ``use_residual``.

    The same computation as ``pylate.models.Dense.forward`` (sentence-transformers' ``Dense``
    applied to token embeddings instead of the pooled sentence embedding).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        *,
        bias: bool = True,
        activation: nn.Module | None = None,
        use_residual: bool = False,
    ) -> None:
        super().__init__()
        self.in_features = in_features
        self.out_features = out_features
        self.linear = nn.Linear(in_features, out_features, bias=bias)
        self.activation = activation if activation is not None else nn.Identity()
        self.use_residual = use_residual
        self.residual = (
            nn.Linear(in_features, out_features, bias=False)
            if use_residual and in_features != out_features
            else None
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Project ``x``: ``(..., in_features) -> (..., out_features)``."""
        out = self.activation(self.linear(x))
        if self.use_residual:
            out = out + (self.residual(x) if self.residual is not None else x)
        return out


class Projection(nn.Module):
    """Dense layers applied in order; with no layer it is the identity."""

    def __init__(self, layers: list[DenseLayer]) -> None:
        super().__init__()
        self.layers = nn.ModuleList(layers)
        self._out_features = layers[-1].out_features if layers else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply every layer: ``(..., in) -> (..., out)``."""
        for layer in self.layers:
            x = layer(x)
        return x

    def output_dim(self, input_dim: int) -> int:
        """Dimension of the output vectors given the transformer's hidden size."""
        return self._out_features if self._out_features is not None else input_dim


def _load_weights(folder: Path, keys: tuple[str, ...] | None = None) -> dict[str, torch.Tensor]:
    """All tensors (or just ``keys``) from a folder's safetensors or PyTorch weights file."""
    single = folder / "model.safetensors"
    index = folder / "model.safetensors.index.json"
    binary = folder / "pytorch_model.bin"
    try:
        if single.is_file():
            if keys is None:
                return load_file(single)
            return _safetensors_subset(single, keys)
        if index.is_file() and keys is not None:
            weight_map = json.loads(index.read_text(encoding="utf-8")).get("weight_map", {})
            shards = {weight_map[k] for k in keys if k in weight_map}
            found: dict[str, torch.Tensor] = {}
            for shard in sorted(shards):
                found.update(_safetensors_subset(folder / shard, keys))
            return found
        if binary.is_file():
            state = safe_torch_load(binary)
            if not isinstance(state, dict):
                raise ModelLoadError(f"{str(binary)!r} does not hold a state dict")
            return {k: v for k, v in state.items() if keys is None or k in keys}
    except ModelLoadError:
        raise
    except Exception as exc:  # corrupt file, refused pickle, unreadable: name the folder.
        raise ModelLoadError(f"could not read the weights in {str(folder)!r}: {exc}") from exc
    raise ModelLoadError(
        f"no weights in {str(folder)!r}: expected model.safetensors or pytorch_model.bin"
    )


def _safetensors_subset(path: Path, keys: tuple[str, ...]) -> dict[str, torch.Tensor]:
    with safe_open(str(path), framework="pt", device="cpu") as handle:
        present = set(handle.keys())
        return {k: handle.get_tensor(k) for k in keys if k in present}


def load_pylate_dense(folder: str | Path) -> DenseLayer:
    """Load one PyLate / sentence-transformers ``Dense`` module folder.

    Args:
        folder: folder with ``config.json`` (``in_features``, ``out_features``, ``bias``,
            ``activation_function``, optional ``use_residual``) and the weights.

    Returns:
        The layer, in float32 on the CPU.

    Raises:
        ModelLoadError: missing or malformed config or weights, unsupported activation.
    """
    folder = Path(folder)
    config_path = folder / "config.json"
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
        in_features, out_features = int(config["in_features"]), int(config["out_features"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ModelLoadError(f"{str(config_path)!r} is not a Dense module config: {exc}") from exc
    layer = DenseLayer(
        in_features,
        out_features,
        bias=bool(config.get("bias", True)),
        activation=_activation(config.get("activation_function"), config_path),
        use_residual=bool(config.get("use_residual", False)),
    )
    state = _load_weights(folder)
    # Same parameter names as PyLate's Dense: linear.weight, linear.bias, residual.weight.
    try:
        layer.load_state_dict({k: v.float() for k, v in state.items()}, strict=True)
    except RuntimeError as exc:
        raise ModelLoadError(
            f"weights in {str(folder)!r} do not fit the Dense config: {exc}"
        ) from exc
    return layer


def load_stanford_linear(folder: str | Path) -> DenseLayer:
    """Load colbert-ai's bias-free ``linear.weight`` projection from a checkpoint's weights.

    Args:
        folder: a colbert-ai checkpoint folder.

    Returns:
        The layer, in float32 on the CPU.

    Raises:
        ModelLoadError: the weights hold no 2-D ``linear.weight``.
    """
    folder = Path(folder)
    weight = _load_weights(folder, keys=("linear.weight",)).get("linear.weight")
    if weight is None or weight.ndim != 2:
        raise ModelLoadError(
            f"{str(folder)!r} looks like a colbert-ai checkpoint but its weights have no "
            "2-D 'linear.weight' projection"
        )
    out_features, in_features = weight.shape
    layer = DenseLayer(in_features, out_features, bias=False)
    layer.linear.weight.data.copy_(weight.float())
    return layer
