"""``load_encoder``: model folder or Hub id in, ready :class:`ColBERTEncoder` out."""

from __future__ import annotations

import contextlib
import functools
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from colmax.encoders import st_format
from colmax.encoders.colbert import ColBERTEncoder
from colmax.encoders.detect import CheckpointInfo, read_checkpoint
from colmax.encoders.hub import resolve_model_folder
from colmax.encoders.onnx_runtime import (
    ENV_VAR,
    onnxruntime_installed,
    resolve_query_runtime,
)
from colmax.encoders.precision import quantize_int8, resolve_encoder_precision
from colmax.encoders.projection import Projection, load_pylate_dense, load_stanford_linear
from colmax.encoders.settings import EncoderSettings, default_settings, setting_names
from colmax.encoders.tokens import TokenPlan
from colmax.errors import InvalidInputError, ModelLoadError
from colmax.torch_load import check_torch_load_is_safe, has_safetensors
from colmax.validation import check_flag

if TYPE_CHECKING:
    from transformers import PreTrainedModel

__all__ = ["load_encoder"]

logger = logging.getLogger(__name__)


def load_encoder(
    model_name_or_path: str | Path,
    *,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    revision: str | None = None,
    compile: bool = False,
    download: bool = True,
    query_runtime: str | None = None,
    **overrides: Any,
) -> ColBERTEncoder:
    """Load a ColBERT checkpoint (colbert-ai, PyLate or sentence-transformers 6), or any Hugging Face encoder, as a token encoder.

    The format is detected from the files (see :mod:`colmax.encoders.detect`); every setting
    the files record can be overridden by keyword. ``load_encoder(**encoder.config())``
    rebuilds the same encoder.

    Args:
        model_name_or_path: a local folder, or a Hugging Face Hub id fetched with
            ``huggingface_hub.snapshot_download`` (cached; honours ``HF_HUB_OFFLINE``).
        device: ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ``"mps"``; ``None``: CUDA when available.
        dtype: ``None``/``"auto"`` (bfloat16 where the CPU or GPU runs it natively, see
            :mod:`colmax.encoders.precision`; ``COLMAX_PRECISION`` overrides on the CPU),
            ``"float32"`` (the mode of the parity tests against PyLate), ``"float16"``,
            ``"bfloat16"`` (or a ``torch.dtype``), or ``"int8"`` (CPU: dynamically quantised
            linear layers). Outputs are float32 and L2-normalised either way.
        revision: Hub branch, tag or commit.
        download: fetch a Hub model missing from the local cache (``False``: the cache only,
            no network request; for model names read from a file, as ``Engine.load`` does).
        compile: run the transformer through ``torch.compile`` (Inductor, weights frozen):
            1.2 to 1.3x the documents per second on a CPU, same vectors to within 1e-6, at the
            price of tens of seconds of compilation on first use (again for a batch of one).
            Worth it for bulk indexing. Where compilation fails (no C++ compiler), a
            ``RuntimeWarning`` is issued and encoding goes on eagerly. Like ``device``, it is
            not part of :meth:`ColBERTEncoder.config`.
        query_runtime: what runs the transformer for queries: ``"torch"`` (default),
            ``"onnxruntime"`` (the same float32 model exported to ONNX when the encoder loads,
            a few seconds, and run by ONNX Runtime: 2-3x lower query latency measured on CPUs
            without native bfloat16; see :mod:`colmax.encoders.onnx_runtime`; needs
            ``pip install "colmax[onnx]"``, the CPU and float32 weights), or ``"auto"``
            (ONNX Runtime where installed and applicable, else PyTorch; what ``colmax serve``
            uses). ``None`` reads ``$COLMAX_QUERY_RUNTIME``. Documents always run through
            PyTorch. Not part of :meth:`ColBERTEncoder.config`.
        **overrides: any :class:`EncoderSettings` field (``format``, ``query_prefix``,
            ``document_prefix``, ``query_length``, ``document_length``, ``do_query_expansion``,
            ``attend_to_expansion_tokens``, ``skiplist_words``, ``normalize``, ``do_lower_case``,
            ``batch_size``). ``None`` means "as the checkpoint says"; ``""`` for a prefix means
            no marker. ``format`` forces a format, e.g. ``"hf"`` to use a ColBERT checkpoint's
            backbone zero-shot.

    Returns:
        The encoder.

    Raises:
        ModelLoadError: missing folder, not a model, unreadable or incomplete weights, failed
            download.
        InvalidInputError: unknown setting name or invalid value, unknown device or dtype.

    Examples:
        >>> enc = load_encoder("colbert-ir/colbertv2.0")  # doctest: +SKIP
        >>> [v.shape for v in enc.encode_queries(["what is late interaction?"])]  # doctest: +SKIP
        [torch.Size([32, 128])]
    """
    runtime = resolve_query_runtime(query_runtime)
    vision = _vision_checkpoint(model_name_or_path, overrides.get("format"), revision, download)
    if vision is not None:  # ColPali / ColQwen: text queries, page images
        if query_runtime is not None and runtime == "onnxruntime":
            raise InvalidInputError("query_runtime='onnxruntime' is for text encoders only")
        from colmax.vision.loader import checkpoint_name, load_vision_encoder

        torch_device = _resolve_device(device)
        torch_dtype, requested_dtype = _resolve_dtype(dtype, torch_device)
        return load_vision_encoder(  # type: ignore[return-value]
            vision,
            name=checkpoint_name(model_name_or_path),
            device=torch_device,
            dtype=torch_dtype,
            requested_dtype=requested_dtype,
            revision=revision,
            **{k: v for k, v in overrides.items() if v is not None},
        )
    unknown = sorted(set(overrides) - set(setting_names()))
    if unknown:
        raise InvalidInputError(
            f"unknown load_encoder argument(s) {unknown}; settings: {sorted(setting_names())}"
        )
    overrides = {k: v for k, v in overrides.items() if v is not None}
    torch_device = _resolve_device(device)
    precision = resolve_encoder_precision(dtype, torch_device)
    torch_dtype = precision.dtype

    folder = resolve_model_folder(str(model_name_or_path), revision=revision, download=download)
    info = read_checkpoint(folder, overrides.pop("format", None))
    model, tokenizer = _load_backbone(info.backbone)
    read = dict(info.read)
    if info.format == st_format.FORMAT:
        read = _model_lengths(read, model, tokenizer)
    try:
        settings = default_settings(info.format, read)
    except InvalidInputError as exc:
        raise ModelLoadError(f"{str(folder)!r} records an invalid setting: {exc}") from exc
    settings = settings.replace(**overrides)
    if info.format == st_format.FORMAT:
        settings = _st_settings(settings, info, tokenizer)
    settings = _cap_lengths(settings, model, tokenizer)
    projection = _load_projection(info)
    plan = _token_plan(tokenizer, model, settings)
    model.to(device=torch_device, dtype=torch_dtype)  # type: ignore[call-arg]  # transformers wraps .to
    projection.to(device=torch_device, dtype=torch_dtype)
    if precision.int8:
        model = quantize_int8(model)  # type: ignore[assignment]

    local = Path(str(model_name_or_path)).expanduser()
    name = str(local.resolve()) if local.is_dir() else str(model_name_or_path)
    runtime = _query_runtime(runtime, query_runtime is None, precision.name, torch_device, name)
    make = functools.partial(
        ColBERTEncoder,
        name=name,
        model=model,
        projection=projection,
        plan=plan,
        device=torch_device,
        dtype=torch_dtype,
        revision=revision,
        requested_dtype=precision.requested,
        compile=check_flag(compile, "compile"),
        precision=precision.name,
    )
    try:
        encoder = make(query_runtime=runtime)
    except ModelLoadError as exc:
        asked_for = query_runtime is not None and query_runtime.lower() == runtime
        if runtime != "onnxruntime" or asked_for:
            raise
        # Chosen automatically (or by the environment): an export that fails its check
        # leaves the encoder on PyTorch, which computes the reference vectors anyway.
        logger.warning("%s; queries stay on PyTorch", exc)
        encoder = make()
    logger.info("Loaded %r", encoder)
    return encoder


def _query_runtime(
    runtime: str, from_environment: bool, precision: str, device: torch.device, name: str
) -> str:
    """``"torch"`` or ``"onnxruntime"``: what encodes this text encoder's queries.

    ``"auto"`` takes ONNX Runtime where it applies (float32 weights on the CPU) and is
    installed. ``"onnxruntime"`` from the environment is skipped, with a warning, where it
    cannot apply; asked for by argument there, it is an error.

    Raises:
        InvalidInputError: ``"onnxruntime"`` asked for by argument where it cannot apply.
    """
    applies = precision == "float32" and device.type == "cpu"
    if runtime == "auto":
        return "onnxruntime" if applies and onnxruntime_installed() else "torch"
    if runtime == "onnxruntime" and not applies:
        if not from_environment:
            raise InvalidInputError(
                "query_runtime='onnxruntime' runs float32 weights on the CPU; this encoder runs "
                f"in {precision} on {device.type} (pass device='cpu', dtype='float32')"
            )
        # Set process-wide: where it cannot apply (bfloat16 chosen on a CPU that runs it
        # natively, a GPU, int8), the encoder keeps PyTorch.
        logger.warning(
            "%s=%s ignored for %s: ONNX Runtime queries need float32 weights on the CPU "
            "(this model runs in %s on %s)",
            ENV_VAR,
            runtime,
            name,
            precision,
            device.type,
        )
        return "torch"
    return runtime


def _vision_checkpoint(
    model_name_or_path: str | Path, fmt: Any, revision: str | None, download: bool = True
) -> Any:
    """The vision checkpoint at ``model_name_or_path`` (:mod:`colmax.vision.detect`), or None."""
    from colmax.vision.detect import VISION_FORMATS, read_vision_checkpoint

    if fmt is not None and fmt not in VISION_FORMATS:
        return None
    folder = resolve_model_folder(str(model_name_or_path), revision=revision, download=download)
    return read_vision_checkpoint(folder, fmt)


def _resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise InvalidInputError(f"unknown device {device!r}: {exc}") from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise InvalidInputError(f"device={device!r} but CUDA is not available here")
    if resolved.type == "mps" and not torch.backends.mps.is_available():
        raise InvalidInputError(f"device={device!r} but MPS is not available here")
    if resolved.type not in ("cpu", "cuda", "mps"):
        raise InvalidInputError(f"device must be cpu, cuda or mps, got {device!r}")
    return resolved


def _resolve_dtype(
    dtype: str | torch.dtype | None, device: torch.device
) -> tuple[torch.dtype, str | None]:
    """The torch dtype to run in, and its canonical name for ``config()`` (None: automatic)."""
    precision = resolve_encoder_precision(dtype, device)
    return precision.dtype, precision.requested


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Silence transformers' load report and progress bars (expected unused keys such as
    colbert-ai's ``linear.weight`` are checked here instead)."""
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    bars = hf_logging.is_progress_bar_enabled()
    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        hf_logging.set_verbosity(verbosity)
        if bars:
            hf_logging.enable_progress_bar()


def _load_backbone(folder: Path) -> tuple[PreTrainedModel, Any]:
    """``AutoModel`` + ``AutoTokenizer`` from a folder, refusing randomly initialised weights."""
    from transformers import AutoModel, AutoTokenizer

    if not has_safetensors(folder) and any(folder.glob("*.bin")):
        check_torch_load_is_safe(folder / "pytorch_model.bin")

    try:
        with _quiet_transformers():
            # A model folder may come from anyone: never import Python files it holds, and
            # read safetensors whenever there are some (a .bin beside them is a pickle).
            tokenizer = AutoTokenizer.from_pretrained(str(folder), trust_remote_code=False)
            model, loading = AutoModel.from_pretrained(
                str(folder),
                output_loading_info=True,
                trust_remote_code=False,
                use_safetensors=has_safetensors(folder) or None,
            )
    except ModelLoadError:
        raise
    except Exception as exc:  # transformers raises OSError, ValueError, KeyError, ...
        raise ModelLoadError(f"could not load a transformer from {str(folder)!r}: {exc}") from exc
    # The pooler is unused (we read last_hidden_state); anything else missing would be random.
    missing = sorted(k for k in loading.get("missing_keys", ()) if not k.startswith("pooler."))
    if missing:
        raise ModelLoadError(
            f"the weights in {str(folder)!r} do not cover the model: {len(missing)} missing, "
            f"e.g. {missing[:5]}"
        )
    _check_vocabulary(folder, model, tokenizer)
    return model.float().eval(), tokenizer


def _check_vocabulary(folder: Path, model: PreTrainedModel, tokenizer: Any) -> None:
    """Refuse a tokenizer that cannot be this model's.

    transformers builds a tokenizer even when a folder's vocabulary files are missing (a
    ``save_pretrained`` of the model alone): it knows only its special tokens, turns every
    word into one id, and the encoder's vectors are garbage without any error. A real
    tokenizer covers most of the model's embedding rows (``vocab_size`` is at most padded,
    e.g. 50,368 rows for 50,280 tokens); one with under half of them is not the model's.
    """
    rows = getattr(model.config, "vocab_size", None)
    size = len(tokenizer)
    if isinstance(rows, int) and rows > 0 and size < rows // 2:
        raise ModelLoadError(
            f"the tokenizer of {str(folder)!r} knows {size} tokens, the model has {rows} "
            "embedding rows: its vocabulary files (tokenizer.json, vocab.txt, ...) are missing "
            "or broken; save the tokenizer beside the model (tokenizer.save_pretrained)"
        )
    try:
        tokenizer("a probe sentence, 123")
    except Exception as exc:  # e.g. "WordPiece error: Missing [UNK] token from the vocabulary"
        raise ModelLoadError(
            f"the tokenizer of {str(folder)!r} cannot encode text ({exc}): its vocabulary "
            "files (tokenizer.json, vocab.txt, ...) are broken"
        ) from exc


def _model_limit(model: PreTrainedModel, tokenizer: Any) -> int | None:
    """The longest input the model takes: the tokenizer's ``model_max_length``, else the
    model's position embeddings (sentence-transformers' ``Transformer.max_seq_length``)."""
    limit = getattr(tokenizer, "model_max_length", None)
    if not isinstance(limit, int) or limit > 100_000:  # transformers' "no limit" sentinel
        limit = getattr(model.config, "max_position_embeddings", None)
        if isinstance(limit, int):
            limit -= _position_offset(model)
    return limit if isinstance(limit, int) else None


def _position_offset(model: PreTrainedModel) -> int:
    """Position rows an input cannot use. RoBERTa-style embeddings (RoBERTa, XLM-R,
    CamemBERT, MPNet, ...) number positions from ``padding_idx + 1``: a 514-row table takes
    512 tokens, and a longer input fails with an index error."""
    embeddings = getattr(model, "embeddings", None)
    padding = getattr(embeddings, "padding_idx", None)
    return padding + 1 if isinstance(padding, int) and padding >= 0 else 0


def _model_lengths(read: dict[str, Any], model: PreTrainedModel, tokenizer: Any) -> dict[str, Any]:
    """A ``MultiVectorEncoder`` without query/document lengths cuts at the model's limit."""
    limit = _model_limit(model, tokenizer)
    if limit is None:
        return read
    return {"query_length": limit, "document_length": limit, **read}


def _st_settings(
    settings: EncoderSettings, info: CheckpointInfo, tokenizer: Any
) -> EncoderSettings:
    """Prompts as marker tokens, and the checks sentence-transformers' own loading makes."""
    source = repr(str(info.folder))
    if info.expansion_token is not None and info.expansion_token != tokenizer.mask_token:
        raise ModelLoadError(
            f"{source}: query expansion with {info.expansion_token!r} is not supported "
            f"(colmax expands with the tokenizer's mask token {tokenizer.mask_token!r})"
        )
    unknown = st_format.unknown_skiplist_words(settings.skiplist_words, tokenizer)
    return settings.replace(
        query_prefix=st_format.resolve_prompt(settings.query_prefix, tokenizer, source),
        document_prefix=st_format.resolve_prompt(settings.document_prefix, tokenizer, source),
        skiplist_words=tuple(w for w in settings.skiplist_words if w not in unknown),
    )


def _cap_lengths(
    settings: EncoderSettings, model: PreTrainedModel, tokenizer: Any
) -> EncoderSettings:
    """Cut query/document lengths to what the model can take (longer inputs would crash it)."""
    limit = _model_limit(model, tokenizer)
    if limit is None:
        return settings
    changes = {}
    for name in ("query_length", "document_length"):
        if getattr(settings, name) > limit:
            logger.warning(
                "%s=%d exceeds the model's %d positions: using %d",
                name,
                getattr(settings, name),
                limit,
                limit,
            )
            changes[name] = limit
    return settings.replace(**changes) if changes else settings


def _load_projection(info: CheckpointInfo) -> Projection:
    if info.format in ("pylate", st_format.FORMAT):
        return Projection([load_pylate_dense(f) for f in info.dense_folders])
    if info.format == "colbert":
        return Projection([load_stanford_linear(info.folder)])
    return Projection([])


def _token_plan(tokenizer: Any, model: PreTrainedModel, settings: EncoderSettings) -> TokenPlan:
    _add_prefix_tokens(tokenizer, model, [settings.query_prefix, settings.document_prefix])

    def token_id(token: str) -> int | None:
        return tokenizer.convert_tokens_to_ids(token) if token else None

    expansion_id = next(
        (i for i in (tokenizer.mask_token_id, tokenizer.eos_token_id) if i is not None), None
    )
    if settings.do_query_expansion and expansion_id is None and tokenizer.pad_token_id is None:
        raise ModelLoadError(
            "query expansion needs a [MASK], eos or pad token and this tokenizer has none; "
            "pass do_query_expansion=False"
        )
    # PyLate maps each skiplist word with convert_tokens_to_ids, so a word missing from the
    # vocabulary contributes the [UNK] id (and [UNK] tokens are then dropped from documents).
    skiplist = frozenset(
        i
        for i in (tokenizer.convert_tokens_to_ids(w) for w in settings.skiplist_words)
        if i is not None
    )
    return TokenPlan(
        tokenizer,
        settings,
        query_prefix_id=token_id(settings.query_prefix),
        document_prefix_id=token_id(settings.document_prefix),
        expansion_id=expansion_id,
        skiplist_ids=skiplist,
    )


def _add_prefix_tokens(tokenizer: Any, model: PreTrainedModel, prefixes: list[str]) -> None:
    """Register the markers as tokens, as PyLate does, growing the embeddings if needed.

    ``tokenizer.add_tokens`` gives new ids only to markers missing from the vocabulary (PyLate's
    default ``"[Q] "`` on a base model); a PyLate-saved checkpoint already has them in its
    tokenizer and weights. PyLate's ``resize_token_embeddings`` fills new rows with the mean of
    the old ones (plus noise of scale 1e-9 x covariance); colmax uses the exact mean.
    """
    prefixes = [p for p in dict.fromkeys(prefixes) if p]
    if not prefixes:
        return
    before = len(tokenizer)
    tokenizer.add_tokens(prefixes)
    after = len(tokenizer)
    if after == before:
        return
    weight = _input_embeddings(model).weight.data
    mean = weight[:before].float().mean(dim=0)
    if weight.shape[0] < after:
        try:
            model.resize_token_embeddings(after, mean_resizing=False)
        except TypeError:  # transformers < 4.46 has no mean_resizing (and does not need it)
            model.resize_token_embeddings(after)
        weight = _input_embeddings(model).weight.data
    weight[before:after] = mean.to(weight.dtype)
    logger.info(
        "Added %d marker token(s) %s to the vocabulary; their embeddings are the mean embedding "
        "(untrained: a checkpoint trained with these markers should ship them)",
        after - before,
        prefixes,
    )


def _input_embeddings(model: PreTrainedModel) -> nn.Embedding:
    embeddings = model.get_input_embeddings()
    if not isinstance(embeddings, nn.Embedding):
        raise ModelLoadError(
            f"cannot add marker tokens: the input embeddings are a {type(embeddings).__name__}"
        )
    return embeddings
