"""Optional ``torch.compile`` of the transformer, with a fall-back to eager execution.

Why: on a CPU the forward pass is nearly all of encoding, and Inductor with ``freezing``
(weights folded in as constants and pre-packed for oneDNN, element-wise ops fused) runs it
1.2 to 1.3x faster than eager PyTorch with the same float32 results to within 1e-6 (see
docs/benchmarks.md, "Encoding throughput"). Compiling costs tens of seconds the first time a shape family
is seen (and again for a batch of one), so it pays off for bulk indexing, not for a few texts;
that is why it is opt-in.

Compilation needs a C++ compiler on CPU (and Triton on CUDA). Where it fails, the encoder
warns once and goes on eagerly: the results are the same, only slower.
"""

from __future__ import annotations

import logging
import warnings
from typing import Any

import torch
from torch import nn

__all__ = ["CompiledModel"]

logger = logging.getLogger(__name__)


class CompiledModel:
    """Calls ``torch.compile(model)``; on a compilation error, warns and calls ``model``.

    Attributes:
        model: the eager module (still the one to move, inspect or save).
        active: False once compilation has failed (every later call is eager).
    """

    def __init__(self, model: nn.Module) -> None:
        import torch._inductor.config as inductor_config  # imported here: only when asked for

        self.model = model
        self.active = True
        self._inductor_config = inductor_config
        # dynamic=True: one graph for every batch size and length instead of one per shape.
        self._compiled = torch.compile(model, dynamic=True)

    def __call__(self, **inputs: torch.Tensor) -> Any:
        if self.active:
            try:
                # Freezing is switched on around the call (compilation happens lazily inside
                # it), not globally, so the user's own torch.compile calls are unaffected.
                # It is set this way because torch.compile(options={"freezing": True})
                # measured slower here (1.16x eager instead of 1.3x): weights were not
                # pre-packed.
                with self._inductor_config.patch(freezing=True):
                    return self._compiled(**inputs)
            except torch.OutOfMemoryError:
                raise  # the eager pass would need as much memory: a real error
            except Exception as exc:
                # Inductor raises many types (missing compiler, unsupported op, codegen bug);
                # whichever it is, the eager model computes the same thing.
                self.active = False
                message = (
                    f"torch.compile failed ({type(exc).__name__}: {str(exc)[:300]}); "
                    "encoding continues without compilation (same results, slower). "
                    "On a CPU, compilation needs a C++ compiler (g++)."
                )
                warnings.warn(message, RuntimeWarning, stacklevel=3)
                logger.warning(message)
        return self.model(**inputs)
