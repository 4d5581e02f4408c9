"""The one way colmax reads a pickle-based tensor file (``pytorch_model.bin``, colbert-ai's
``.pt`` index files): ``torch.load(weights_only=True)``, and only on a torch that fixed the known
ways around it.

``weights_only=True`` allowed code execution before torch 2.6 (CVE-2025-32434) and memory
corruption before 2.10 (CVE-2026-24747, GHSA-63cw-57p8-fm3p). colmax's dependencies require
torch >= 2.10; this check covers an older torch installed anyway (``--no-deps``, a pinned
environment). Safetensors files need no pickle and are read on any torch.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from colmax.errors import ModelLoadError

__all__ = ["SAFE_TORCH", "check_torch_load_is_safe", "has_safetensors", "safe_torch_load"]

#: The oldest torch whose ``torch.load(weights_only=True)`` colmax trusts.
SAFE_TORCH = (2, 10)


def _version(text: str) -> tuple[int, int]:
    match = re.match(r"(\d+)\.(\d+)", text)
    return (int(match[1]), int(match[2])) if match else (0, 0)


def check_torch_load_is_safe(path: Path | str) -> None:
    """Refuse to unpickle ``path`` on a torch older than :data:`SAFE_TORCH`.

    Raises:
        ModelLoadError: naming the file, the installed torch and the fix.
    """
    installed = str(torch.__version__)
    if _version(installed) < SAFE_TORCH:
        floor = ".".join(map(str, SAFE_TORCH))
        raise ModelLoadError(
            f"{str(path)!r} is a pickle-based file, and torch {installed} can run code hidden "
            f"in one even with weights_only=True (CVE-2025-32434, CVE-2026-24747): upgrade to "
            f"torch>={floor}, or use a model saved as safetensors"
        )


def safe_torch_load(path: Path) -> Any:
    """``torch.load(path, map_location="cpu", weights_only=True)`` after
    :func:`check_torch_load_is_safe`. Errors from ``torch.load`` itself propagate."""
    check_torch_load_is_safe(path)
    return torch.load(path, map_location="cpu", weights_only=True)


def has_safetensors(folder: Path) -> bool:
    """Whether a model folder holds safetensors weights (then no pickle is ever needed)."""
    return any(folder.glob("*.safetensors"))
