"""Load a vision retriever (transformers "-hf" classes or colpali-engine) as a :class:`VisionEncoder`."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from colmax.errors import InvalidInputError, ModelLoadError
from colmax.torch_load import check_torch_load_is_safe, has_safetensors
from colmax.vision.detect import ENGINE_CLASSES, VisionCheckpoint
from colmax.vision.encoder import VisionEncoder
from colmax.vision.processors import load_engine_processor

__all__ = ["VISION_SETTINGS", "load_vision_encoder"]

logger = logging.getLogger(__name__)

#: ``load_encoder`` keywords a vision encoder takes (besides device, dtype, revision).
VISION_SETTINGS = ("format", "batch_size", "image_batch_size")


def load_vision_encoder(
    checkpoint: VisionCheckpoint,
    *,
    name: str,
    device: torch.device,
    dtype: torch.dtype,
    requested_dtype: str | None,
    revision: str | None = None,
    **settings: Any,
) -> VisionEncoder:
    """Load model and processor of ``checkpoint`` (see :mod:`colmax.vision.detect`).

    Called by :func:`colmax.encoders.load_encoder`, which resolves the folder, device and
    dtype the same way for every encoder.

    Raises:
        ModelLoadError: unreadable files, missing weights, or colpali-engine not installed
            for a colpali-engine checkpoint.
        InvalidInputError: a setting that vision encoders do not take.
    """
    unknown = sorted(set(settings) - set(VISION_SETTINGS))
    if unknown:
        raise InvalidInputError(
            f"{unknown} do not apply to a vision retriever; it takes {list(VISION_SETTINGS)}"
        )
    from colmax.encoders.loader import _quiet_transformers

    folder = str(checkpoint.folder)
    try:
        with _quiet_transformers():
            if checkpoint.format == "colpali-hf":
                model, processor = _load_native(folder, checkpoint.model_class)
            else:
                model, processor = _load_engine(folder, checkpoint.model_class)
    except ModelLoadError:
        raise
    except Exception as exc:  # transformers raises OSError, ValueError, KeyError, ...
        raise ModelLoadError(
            f"could not load {checkpoint.model_class} from {folder!r}: {exc}"
        ) from exc
    _tie_unloaded_heads(model)
    model.to(device=device, dtype=dtype)
    encoder = VisionEncoder(
        name=name,
        model=model,
        processor=processor,
        format=checkpoint.format,
        family=checkpoint.family,
        device=device,
        dtype=dtype,
        revision=revision,
        requested_dtype=requested_dtype,
        batch_size=settings.get("batch_size"),
        image_batch_size=settings.get("image_batch_size"),
    )
    logger.info("Loaded %r", encoder)
    return encoder


def _safe_loading(folder: str) -> dict[str, Any]:
    """``from_pretrained`` options for a folder from anyone: never import its Python files;
    safetensors when it has some; refuse its pickles on a torch that cannot load them safely."""
    path = Path(folder)
    if not has_safetensors(path):
        check_torch_load_is_safe(path)
    return {"trust_remote_code": False, "use_safetensors": has_safetensors(path) or None}


def _load_native(folder: str, model_class: str) -> tuple[Any, Any]:
    import transformers

    cls = getattr(transformers, model_class)
    model, loading = cls.from_pretrained(folder, output_loading_info=True, **_safe_loading(folder))
    _refuse_missing(folder, loading.get("missing_keys", ()))
    processor = transformers.AutoProcessor.from_pretrained(folder, trust_remote_code=False)
    return model.float().eval(), processor


def _load_engine(folder: str, model_class: str) -> tuple[Any, Any]:
    try:
        import colpali_engine.models as engine_models
    except ImportError as exc:
        raise ModelLoadError(
            f"{folder!r} is a colpali-engine checkpoint ({model_class}): "
            f'pip install "colmax[colpali]" ({exc})'
        ) from exc
    processor_class = ENGINE_CLASSES[model_class][0]
    cls = getattr(engine_models, model_class)
    model, loading = cls.from_pretrained(folder, output_loading_info=True, **_safe_loading(folder))
    _refuse_missing(folder, loading.get("missing_keys", ()))
    processor = load_engine_processor(getattr(engine_models, processor_class), folder)
    return model.float().eval(), processor


def _tie_unloaded_heads(model: Any) -> None:
    """Tie a language-model head left on the meta device to the input embeddings.

    colpali-engine checkpoints do not store ``lm_head``: PaliGemma (Gemma) ties it to the token
    embeddings, but colpali-engine's ``ColPali.tie_weights`` ties inside the language model
    only, so transformers leaves the head as a meta tensor that ``.to(device)`` cannot move
    (PaliGemma's forward still computes logits with it, unused by retrieval). Sharing the
    embedding matrix is what the tied checkpoint means, and costs no memory.
    """
    embeddings = model.get_input_embeddings().weight
    for name, module in model.named_modules():
        for pname, param in list(module.named_parameters(recurse=False)):
            if not param.is_meta:
                continue
            if "lm_head" not in f"{name}.{pname}" or param.shape != embeddings.shape:
                raise ModelLoadError(f"weight {name}.{pname} was not loaded")
            setattr(module, pname, embeddings)


def _refuse_missing(folder: str, missing: Any) -> None:
    # A missing weight would be random: refuse rather than embed noise. The language model
    # head is unused by retrievers (colpali-engine lists it among keys it may miss).
    missing = sorted(k for k in missing if "lm_head" not in k)
    if missing:
        raise ModelLoadError(
            f"the weights in {folder!r} do not cover the model: {len(missing)} missing, "
            f"e.g. {missing[:5]}"
        )


def checkpoint_name(model_name_or_path: str | Path) -> str:
    """The name recorded for a model: an absolute folder, or the Hub id as given."""
    local = Path(str(model_name_or_path)).expanduser()
    return str(local.resolve()) if local.is_dir() else str(model_name_or_path)
