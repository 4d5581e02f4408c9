"""The precision an encoder runs in: asked for, forced by ``COLMAX_PRECISION``, or automatic.

Automatic (``dtype=None`` or ``"auto"``):

* CUDA: bfloat16 where the GPU supports it, else float16;
* CPU: bfloat16 weights where the CPU runs bfloat16 natively (:mod:`colmax.hardware`: AVX512-BF16
  or AMX, confirmed by a timed probe), else float32. On such a CPU bfloat16 weights measured
  2-3x float32 for MiniLM with nDCG@10 within 0.002 (``docs/benchmarks.md``, "Precision");
* MPS: float32.

``COLMAX_PRECISION`` (``float32``, ``bfloat16``, ``int8``) replaces the CPU's automatic choice;
an explicit ``dtype`` always wins. ``"int8"`` keeps float32 weights and quantises every
``nn.Linear`` of the transformer to int8 with dynamic activation scales
(``torch.ao.quantization.quantize_dynamic``, fbgemm/oneDNN kernels): a measured option for CPUs
without native bfloat16, never chosen automatically (see the benchmarks page).

Outputs are float32 and L2-normalised whatever the precision.
"""

from __future__ import annotations

import logging
import warnings
from dataclasses import dataclass

import torch
from torch import nn

from colmax.errors import InvalidInputError
from colmax.hardware import resolve_precision

__all__ = ["Precision", "quantize_int8", "resolve_encoder_precision"]

logger = logging.getLogger(__name__)

_DTYPES = {
    "float32": torch.float32,
    "fp32": torch.float32,
    "float": torch.float32,
    "float16": torch.float16,
    "fp16": torch.float16,
    "half": torch.float16,
    "bfloat16": torch.bfloat16,
    "bf16": torch.bfloat16,
}


@dataclass(frozen=True)
class Precision:
    """How an encoder computes.

    Attributes:
        dtype: the weights' dtype.
        requested: the name for ``config()``: what was asked for, ``None`` for automatic (so an
            index built on one machine picks the best precision on the next).
        int8: quantise the transformer's linear layers to int8 (weights stay float32 beside).
    """

    dtype: torch.dtype
    requested: str | None
    int8: bool = False

    @property
    def name(self) -> str:
        """``"int8"`` or the dtype's name (``"bfloat16"``, ...)."""
        return "int8" if self.int8 else str(self.dtype).removeprefix("torch.")


def _automatic(device: torch.device) -> Precision:
    if device.type == "cuda":
        bf16 = torch.cuda.is_bf16_supported()
        return Precision(torch.bfloat16 if bf16 else torch.float16, None)
    if device.type != "cpu":
        return Precision(torch.float32, None)
    chosen = resolve_precision(None, "cpu")  # COLMAX_PRECISION, else the hardware
    if chosen == "int8":
        return Precision(torch.float32, None, int8=True)
    return Precision(_DTYPES[chosen], None)


def resolve_encoder_precision(dtype: str | torch.dtype | None, device: torch.device) -> Precision:
    """The precision for ``load_encoder(dtype=...)`` on ``device``.

    Args:
        dtype: ``None``/``"auto"``, ``"float32"``, ``"float16"``, ``"bfloat16"``, ``"int8"``
            (CPU only), or a torch floating dtype.
        device: where the model runs.

    Returns:
        The precision.

    Raises:
        InvalidInputError: an unknown dtype, or int8 off the CPU.
    """
    if dtype is None or (isinstance(dtype, str) and dtype.lower() == "auto"):
        return _automatic(device)
    if isinstance(dtype, str) and dtype.lower() == "int8":
        if device.type != "cpu":
            raise InvalidInputError(f"dtype='int8' runs on the CPU only, not on {device.type}")
        return Precision(torch.float32, "int8", int8=True)
    if isinstance(dtype, torch.dtype):
        resolved: torch.dtype | None = dtype
    elif isinstance(dtype, str) and dtype.lower().removeprefix("torch.") in _DTYPES:
        resolved = _DTYPES[dtype.lower().removeprefix("torch.")]
    else:
        resolved = None
    if resolved not in (torch.float32, torch.float16, torch.bfloat16):
        raise InvalidInputError(
            f"dtype must be 'auto', float32, float16, bfloat16 or 'int8', got {dtype!r}"
        )
    if resolved == torch.float16 and device.type == "cpu":
        logger.warning("float16 on the CPU is slow and less accurate; prefer float32 or bfloat16")
    return Precision(resolved, str(resolved).removeprefix("torch."))


def quantize_int8(model: nn.Module) -> nn.Module:
    """``model`` with every ``nn.Linear`` replaced by a dynamically quantised int8 one."""
    with warnings.catch_warnings():  # torch marks its quantised tensor types deprecated
        warnings.simplefilter("ignore")
        return torch.ao.quantization.quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)
