"""Query encoding through ONNX Runtime: the same float32 transformer, lower latency on a CPU.

Why: a query is one short text, and encoding it is a chain of small matrix products
(``32 x 384`` by ``384 x 1536`` for MiniLM). PyTorch runs those through generic GEMM calls
with fixed costs per operator; ONNX Runtime's CPU provider fuses the graph (attention,
layer norm, GELU) and its MLAS kernels suit small products. Measured on an AVX2-only CPU
(``docs/benchmarks.md``, "Query encoding: ONNX Runtime"), one query at a time took 2.2 to 2.9x
less time than eager PyTorch (MiniLM 21.0 -> 9.5 ms) with the same vectors to within 5e-7;
for document batches eager PyTorch was as fast, so only queries take this path.

The transformer is exported in memory (``torch.onnx.export``, TorchScript tracer) when the
encoder loads: a few seconds for a MiniLM-sized model, nothing written to disk, the same
weights (float32, CPU) as the PyTorch model. The export traces one example batch, so a model
whose Python code branches on input values could trace wrongly for other inputs; the
exported graph is therefore checked against PyTorch on a padded batch and on a single text,
and refused (``ModelLoadError``) if it disagrees.

Needs the ``onnx`` extra (``pip install "colmax[onnx]"``: ``onnxruntime`` and ``onnx``).
"""

from __future__ import annotations

import importlib.util
import io
import logging
import os
import warnings

import torch
from torch import nn

from colmax.errors import InvalidInputError, ModelLoadError
from colmax.threads import current_policy

__all__ = [
    "ENV_VAR",
    "QUERY_RUNTIMES",
    "OnnxRuntimeModel",
    "onnxruntime_installed",
    "resolve_query_runtime",
]

logger = logging.getLogger(__name__)

#: Environment variable that picks the query runtime when ``load_encoder`` is not told.
ENV_VAR = "COLMAX_QUERY_RUNTIME"
#: The runtimes queries can be encoded with; ``"auto"``: ONNX Runtime where it is installed
#: and applies (a text encoder with float32 weights on the CPU), else PyTorch.
QUERY_RUNTIMES = ("torch", "onnxruntime", "auto")

# Largest absolute difference of hidden states accepted between the export and PyTorch.
# Both compute in float32; a faithful export differs by ~1e-6 (MiniLM), a mis-traced one by
# tenths (a dropped attention mask, dropout left on).
_TOLERANCE = 1e-3


def onnxruntime_installed() -> bool:
    """Whether ``onnxruntime`` and ``onnx`` (the exporter needs it) can be imported."""
    return all(importlib.util.find_spec(name) is not None for name in ("onnxruntime", "onnx"))


def resolve_query_runtime(query_runtime: str | None, default: str = "torch") -> str:
    """``query_runtime``, else ``$COLMAX_QUERY_RUNTIME``, else ``default``.

    Raises:
        InvalidInputError: not one of :data:`QUERY_RUNTIMES`.
    """
    source = "query_runtime"
    if query_runtime is None:
        from_env = os.environ.get(ENV_VAR)
        query_runtime, source = (from_env, ENV_VAR) if from_env else (default, "default")
    if not isinstance(query_runtime, str) or query_runtime.lower() not in QUERY_RUNTIMES:
        raise InvalidInputError(
            f"{source} must be one of {', '.join(QUERY_RUNTIMES)}, got {query_runtime!r}"
        )
    return query_runtime.lower()


class _Positional(nn.Module):
    """The model called with positional inputs (what the tracer passes), returning its last
    hidden states."""

    def __init__(self, model: nn.Module, names: list[str]) -> None:
        super().__init__()
        self.model = model
        self.names = names

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        return self.model(**dict(zip(self.names, inputs, strict=True)))[0]


class OnnxRuntimeModel:
    """A float32 CPU transformer exported to ONNX and run by ONNX Runtime's CPU provider.

    Called like the Hugging Face model (keyword tensors), it returns a one-element tuple with
    the last hidden states, as the model does at index 0.

    Attributes:
        threads: ONNX Runtime's intra-op threads (PyTorch's thread count at load time).
        spinning: whether its idle threads spin (only where ``OMP_WAIT_POLICY`` is not
            ``PASSIVE``, i.e. where colmax's thread policy is not in effect).
    """

    def __init__(self, model: nn.Module, sample: dict[str, torch.Tensor]) -> None:
        """Export ``model`` by tracing ``sample`` and check the export.

        Args:
            model: the transformer, float32 on the CPU, in eval mode.
            sample: a tokenized batch of at least two texts of different lengths (padding in
                the attention mask, so the traced graph keeps the mask).

        Raises:
            InvalidInputError: the model is not float32 on the CPU.
            ModelLoadError: ``onnxruntime`` is missing, the export failed, or the exported
                graph computes other hidden states than PyTorch.
        """
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise ModelLoadError(
                "query_runtime='onnxruntime' needs ONNX Runtime: pip install 'colmax[onnx]'"
            ) from exc
        param = next(model.parameters())
        if param.device.type != "cpu" or param.dtype != torch.float32:
            raise InvalidInputError(
                "query_runtime='onnxruntime' runs float32 weights on the CPU; this model is "
                f"{param.dtype} on {param.device.type} (pass device='cpu', dtype='float32')"
            )
        self._names = list(sample)
        wrapper = _Positional(model, self._names).eval()  # eval: no dropout in the trace
        was_training = model.training
        buffer = io.BytesIO()
        try:
            with warnings.catch_warnings():  # the tracer's and the exporter's deprecation notes
                warnings.simplefilter("ignore")
                torch.onnx.export(
                    wrapper,
                    tuple(sample.values()),
                    buffer,  # type: ignore[arg-type]  # the TorchScript exporter takes a stream
                    input_names=self._names,
                    output_names=["hidden"],
                    dynamic_axes={n: {0: "batch", 1: "length"} for n in [*self._names, "hidden"]},
                    opset_version=17,
                    dynamo=False,
                )
        except Exception as exc:  # the exporter raises many types; any means "no export"
            raise ModelLoadError(
                f"could not export the model to ONNX ({type(exc).__name__}: {str(exc)[:300]}); "
                "use query_runtime='torch'"
            ) from exc
        finally:
            model.train(was_training)  # export restores modes via the wrapper: keep the model's
        options = ort.SessionOptions()
        self.threads = torch.get_num_threads()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.log_severity_level = 3  # errors only: its graph-fusion notes are not for users
        self.spinning = not current_policy().passive
        if not self.spinning:
            # colmax's thread policy (colmax.threads): idle threads sleep rather than spin, so
            # a server does not burn the cores it shares between queries. ONNX Runtime has its
            # own pool, which spins by default.
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = ort.InferenceSession(
            buffer.getvalue(), options, providers=["CPUExecutionProvider"]
        )
        # The exporter drops inputs the graph does not use; feed only the ones it kept.
        self._inputs = [i.name for i in self._session.get_inputs()]
        self._check(model, sample)

    def __call__(self, **inputs: torch.Tensor) -> tuple[torch.Tensor]:
        feed = {name: inputs[name].cpu().numpy() for name in self._inputs}
        (hidden,) = self._session.run(["hidden"], feed)
        return (torch.from_numpy(hidden),)

    def _check(self, model: nn.Module, sample: dict[str, torch.Tensor]) -> None:
        """Compare with PyTorch on the traced batch and on its shortest text alone."""
        shortest = int(sample["attention_mask"].sum(1).argmin())
        length = int(sample["attention_mask"][shortest].sum())
        alone = {k: v[shortest : shortest + 1, :length] for k, v in sample.items()}
        for batch in (sample, alone):
            mask = batch["attention_mask"].bool()
            with torch.inference_mode():
                expected = model(**batch)[0][mask]
            got = self(**batch)[0][mask]
            error = float((got - expected).abs().max())
            if not error <= _TOLERANCE:  # also catches NaN
                raise ModelLoadError(
                    "the ONNX export of this model computes other vectors than PyTorch "
                    f"(largest difference {error:.3g}); use query_runtime='torch'"
                )
        logger.info("ONNX Runtime query encoder ready (%d threads)", self.threads)
