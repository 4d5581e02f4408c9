"""The ColBERT token encoder: a Hugging Face transformer, projection layers and ColBERT rules."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import nn
from tqdm.auto import tqdm

from colmax import deadline
from colmax.encoders.compiled import CompiledModel
from colmax.encoders.projection import Projection
from colmax.encoders.settings import EncoderSettings
from colmax.encoders.tokens import PreparedText, Span, TokenPlan
from colmax.errors import InvalidInputError
from colmax.validation import as_list, check_positive_int, check_texts

if TYPE_CHECKING:
    from transformers import PreTrainedModel

__all__ = ["PROGRESS_THRESHOLD", "ColBERTEncoder"]

logger = logging.getLogger(__name__)

#: With ``show_progress=None`` a progress bar is shown for more texts than this.
PROGRESS_THRESHOLD = 1000

# Texts tokenized (and sorted by length) together; bounds memory on very long inputs.
_SORT_WINDOW = 8192


def _check_texts(texts: Sequence[str]) -> list[str]:
    return check_texts(as_list(texts, "texts"), "texts")


class ColBERTEncoder:
    """Encode queries and documents into one vector per kept token (the ``Encoder`` protocol).

    Build one with :func:`colmax.encoders.load_encoder`; the constructor takes parts that are
    already loaded.

    Attributes:
        settings: the :class:`EncoderSettings` in force.
        format: checkpoint format, one of :data:`~colmax.encoders.settings.FORMATS`.
        device: where the model runs.
        dtype: the model's floating-point type (outputs are always float32 on the CPU).
        precision: how the transformer computes: ``"float32"``, ``"bfloat16"``, ``"float16"``
            or ``"int8"`` (dynamically quantised linear layers, float32 weights elsewhere).
        query_runtime: what runs the transformer for queries: ``"torch"`` or
            ``"onnxruntime"`` (see :mod:`colmax.encoders.onnx_runtime`).
    """

    def __init__(
        self,
        *,
        name: str,
        model: PreTrainedModel,
        projection: Projection,
        plan: TokenPlan,
        device: torch.device,
        dtype: torch.dtype,
        revision: str | None = None,
        requested_dtype: str | None = None,
        compile: bool = False,
        precision: str | None = None,
        query_runtime: str = "torch",
    ) -> None:
        self._name = name
        self.model = model.eval()
        # The module to call: the eager model, or its compiled wrapper (same weights).
        self._run: Any = CompiledModel(self.model) if compile else self.model
        self.projection = projection.eval()
        self.plan = plan
        self.settings: EncoderSettings = plan.settings
        self.format: str = plan.settings.format
        self.device = device
        self.dtype = dtype
        self.revision = revision
        self._requested_dtype = requested_dtype
        self.precision = precision or str(dtype).removeprefix("torch.")
        self._dim = projection.output_dim(int(model.config.hidden_size))
        # Queries may run through ONNX Runtime (lower latency for one short text on a CPU);
        # documents always run through PyTorch (as fast or faster in batches).
        self._query_run: Any = self._run
        if query_runtime == "onnxruntime":
            from colmax.encoders.onnx_runtime import OnnxRuntimeModel

            sample = plan.collate(
                plan.prepare(["sample", "a longer sample text for the export"], is_query=False)
            )
            self._query_run = OnnxRuntimeModel(self.model, sample)
        self.query_runtime = query_runtime

    @property
    def name(self) -> str:
        """Model folder (absolute) or Hub id the encoder was loaded from."""
        return self._name

    @property
    def dim(self) -> int:
        """Dimension of every output vector."""
        return self._dim

    @property
    def tokenizer(self) -> Any:
        """The Hugging Face tokenizer (prefix tokens added).

        Calling it sets shared truncation state: from several threads, hold
        :func:`colmax.encoders.tokens.tokenizer_lock` of it around each call, as colmax does.
        """
        return self.plan.tokenizer

    @property
    def compiled(self) -> bool:
        """Whether the forward pass runs through ``torch.compile`` (False after a fall-back)."""
        return isinstance(self._run, CompiledModel) and self._run.active

    def __repr__(self) -> str:
        return (
            f"ColBERTEncoder(name={self._name!r}, format={self.format!r}, dim={self._dim}, "
            f"device={str(self.device)!r}, precision={self.precision!r}"
            + (", compiled=True" if self.compiled else "")
            + (f", query_runtime={self.query_runtime!r})" if self.query_runtime != "torch" else ")")
        )

    def encode_queries(
        self,
        texts: Sequence[str],
        *,
        batch_size: int | None = None,
        show_progress: bool | None = None,
    ) -> list[torch.Tensor]:
        """Encode queries: marker, ``[MASK]`` expansion to ``query_length`` where enabled.

        Args:
            texts: the queries.
            batch_size: texts per forward pass (default: ``settings.batch_size``).
            show_progress: tqdm progress bar; ``None`` shows one above
                :data:`PROGRESS_THRESHOLD` texts.

        Returns:
            One float32 CPU tensor ``(n_tokens, dim)`` per query, in input order; with
            expansion ``n_tokens == settings.query_length``.

        Raises:
            InvalidInputError: ``texts`` is a bare string or holds a non-string.
            EmptyTextError: a text is empty or whitespace only (the message names its position).
        """
        return self._encode(
            texts, is_query=True, batch_size=batch_size, show_progress=show_progress
        )

    def encode_documents(
        self,
        texts: Sequence[str],
        *,
        batch_size: int | None = None,
        show_progress: bool | None = None,
    ) -> list[torch.Tensor]:
        """Encode documents: marker, truncation to ``document_length``, skiplist and padding dropped.

        Args:
            texts: the documents.
            batch_size: texts per forward pass (default: ``settings.batch_size``).
            show_progress: tqdm progress bar; ``None`` shows one above
                :data:`PROGRESS_THRESHOLD` texts.

        Returns:
            One float32 CPU tensor ``(n_tokens, dim)`` per document, in input order.

        Raises:
            InvalidInputError: ``texts`` is a bare string or holds a non-string.
            EmptyTextError: a text is empty or whitespace only (the message names its position).
        """
        return self._encode(
            texts, is_query=False, batch_size=batch_size, show_progress=show_progress
        )

    def token_spans(
        self, texts: Sequence[str], *, is_query: bool = False
    ) -> list[list[Span | None]]:
        """Character spans of the tokens behind each output vector.

        Row ``j`` of ``encode_documents([text])[0]`` (or ``encode_queries``) comes from
        ``text[start:end]`` for ``token_spans([text])[0][j] == (start, end)``; ``None`` marks
        ``[CLS]``, ``[SEP]``, the marker and ``[MASK]`` expansion rows. Offsets index the text as
        given (leading whitespace counted); with ``do_lower_case`` they assume lowercasing keeps
        the length, true for all but a few non-ASCII characters.

        Args:
            texts: the texts.
            is_query: use the query rules instead of the document rules.

        Returns:
            Per text, one entry per output row.

        Raises:
            InvalidInputError: bad texts, or the tokenizer has no offsets (not a "fast" one).
        """
        items = _check_texts(texts)
        if not getattr(self.tokenizer, "is_fast", False):
            raise InvalidInputError(
                "token_spans needs a fast (Rust) tokenizer, this model has none"
            )
        prepared = self.plan.prepare(items, is_query=is_query, with_spans=True)
        return [[p.spans[k] for k in p.keep] for p in prepared if p.spans is not None]

    def config(self) -> dict[str, Any]:
        """Settings that rebuild this encoder: ``load_encoder(**encoder.config())``.

        The device is left out on purpose (an index built on a GPU must load on a laptop);
        the dtype is the one asked for (``None``: float16 on CUDA, float32 elsewhere).

        Returns:
            A JSON-serialisable dict: ``model_name_or_path``, ``revision``, ``dtype`` and every
            :class:`EncoderSettings` field.
        """
        return {
            "model_name_or_path": self._name,
            "revision": self.revision,
            "dtype": self._requested_dtype,
            **self.settings.to_dict(),
        }

    def _encode(
        self,
        texts: Sequence[str],
        *,
        is_query: bool,
        batch_size: int | None,
        show_progress: bool | None,
    ) -> list[torch.Tensor]:
        items = _check_texts(texts)
        if batch_size is None:
            batch_size = self.settings.batch_size
        batch_size = check_positive_int(batch_size, "batch_size")
        if not items:
            return []
        if show_progress is None:
            show_progress = len(items) > PROGRESS_THRESHOLD
        results: list[torch.Tensor] = []
        desc = "Encoding queries" if is_query else "Encoding documents"
        run = self._query_run if is_query else self._run
        with tqdm(total=len(items), desc=desc, disable=not show_progress, unit="text") as bar:
            # Tokenize a window at a time so a huge corpus never sits in memory as token lists.
            for start in range(0, len(items), _SORT_WINDOW):
                prepared = self.plan.prepare(items[start : start + _SORT_WINDOW], is_query=is_query)
                results.extend(self._encode_window(prepared, batch_size, bar, run))
        return results

    def _encode_window(
        self, prepared: list[PreparedText], batch_size: int, bar: tqdm, run: Any
    ) -> list[torch.Tensor]:
        # Longest first, so batches pad little and an out-of-memory error shows up at once.
        order = sorted(range(len(prepared)), key=lambda i: -len(prepared[i].input_ids))
        results: list[torch.Tensor] = [torch.empty(0)] * len(prepared)
        for start in range(0, len(order), batch_size):
            deadline.check()  # a caller's deadline (a server request) stops between batches
            batch_ids = order[start : start + batch_size]
            items = [prepared[i] for i in batch_ids]
            padded = self._forward(items, run)
            for row, (i, item) in enumerate(zip(batch_ids, items, strict=True)):
                # Indexing outside inference mode copies into an ordinary tensor: callers may
                # modify it in place or use it with autograd.
                results[i] = padded[row, item.keep]
            bar.update(len(batch_ids))
        return results

    @torch.inference_mode()
    def _forward(self, items: list[PreparedText], run: Any) -> torch.Tensor:
        """Padded float32 CPU vectors ``(batch, longest, dim)``, normalised when asked."""
        batch = {k: v.to(self.device) for k, v in self.plan.collate(items).items()}
        hidden = run(**batch)[0]
        vectors = self.projection(hidden).float()
        if self.settings.normalize:
            vectors = nn.functional.normalize(vectors, p=2, dim=-1)
        return vectors.cpu()
