"""Recognise a vision retriever checkpoint (ColPali, ColQwen) from its files.

Two layouts are understood, beside the text formats of :mod:`colmax.encoders.detect`:

- ``"colpali-hf"``: transformers' own classes, saved with ``save_pretrained`` (model +
  processor): ``config.json`` names ``ColPaliForRetrieval`` or ``ColQwen2ForRetrieval``.
  These are the Hub's "-hf" checkpoints (``vidore/colpali-v1.3-hf``,
  ``vidore/colqwen2-v1.0-hf``) and run on transformers alone.
- ``"colpali-engine"``: checkpoints of the colpali-engine library (``vidore/colqwen2-v1.0``,
  ``vidore/colqwen2.5-v0.2``, ``vidore/colSmol-256M``, ``vidore/colpali-v1.3``), either merged
  (``config.json`` names ``ColQwen2``, ``ColQwen2_5``, ``ColIdefics3``, ``ColPali``) or a LoRA
  adapter (``adapter_config.json`` over a base model); the model class is read from the
  processor's ``processor_class``, else the architectures, else the names. They need
  ``pip install "colmax[colpali]"``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from colmax.errors import ModelLoadError

__all__ = ["VISION_FORMATS", "VisionCheckpoint", "read_vision_checkpoint"]

#: Formats of vision retrievers (``load_encoder(format=...)`` accepts them too).
VISION_FORMATS = ("colpali-hf", "colpali-engine")

#: transformers class -> model family (how its image tokens are laid out).
NATIVE_CLASSES = {"ColPaliForRetrieval": "paligemma", "ColQwen2ForRetrieval": "qwen2"}

#: colpali-engine model class -> (processor class, family).
ENGINE_CLASSES = {
    "ColPali": ("ColPaliProcessor", "paligemma"),
    "ColQwen2": ("ColQwen2Processor", "qwen2"),
    "ColQwen2_5": ("ColQwen2_5_Processor", "qwen2"),
    "ColIdefics3": ("ColIdefics3Processor", "idefics3"),
}
_PROCESSOR_TO_CLASS = {proc: cls for cls, (proc, _) in ENGINE_CLASSES.items()}
# Longest first: "colqwen2.5" must not be read as "colqwen2".
_NAME_HINTS = (
    ("colqwen2.5", "ColQwen2_5"),
    ("colqwen2_5", "ColQwen2_5"),
    ("colqwen2", "ColQwen2"),
    ("colsmol", "ColIdefics3"),
    ("colidefics3", "ColIdefics3"),
    ("colpali", "ColPali"),
)


@dataclass(frozen=True)
class VisionCheckpoint:
    """What a vision checkpoint's files say.

    Attributes:
        folder: the model folder.
        format: ``"colpali-hf"`` or ``"colpali-engine"``.
        model_class: the class to load (``"ColPaliForRetrieval"``, ``"ColQwen2"``, ...).
        family: ``"paligemma"``, ``"qwen2"`` or ``"idefics3"``: how image tokens map to
            patches.
    """

    folder: Path
    format: str
    model_class: str
    family: str


def _json(path: Path) -> Any:
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"{str(path)!r} is not valid JSON: {exc}") from exc


def _architectures(folder: Path) -> list[str]:
    config = _json(folder / "config.json")
    if not isinstance(config, dict):
        return []
    return [str(a) for a in config.get("architectures") or []]


def _processor_class(folder: Path) -> str | None:
    for name in ("processor_config.json", "preprocessor_config.json", "tokenizer_config.json"):
        config = _json(folder / name)
        if isinstance(config, dict) and isinstance(config.get("processor_class"), str):
            return str(config["processor_class"])
    return None


def _engine_class(folder: Path) -> str | None:
    """The colpali-engine class of a folder, or ``None`` when nothing says it is one."""
    for arch in _architectures(folder):
        if arch in ENGINE_CLASSES:
            return arch
    adapter = _json(folder / "adapter_config.json")
    if not isinstance(adapter, dict):
        return None
    processor = _processor_class(folder)
    if processor in _PROCESSOR_TO_CLASS:
        return _PROCESSOR_TO_CLASS[processor]
    base = str(adapter.get("base_model_name_or_path") or "")
    if base and Path(base).is_dir():
        for arch in _architectures(Path(base)):
            if arch in ENGINE_CLASSES:
                return arch
    names = f"{base} {folder.name}".lower()
    return next((cls for hint, cls in _NAME_HINTS if hint in names), None)


def read_vision_checkpoint(folder: str | Path, fmt: str | None = None) -> VisionCheckpoint | None:
    """Detect a vision retriever in ``folder``; ``None`` when it is not one.

    Args:
        folder: a local model folder.
        fmt: impose ``"colpali-hf"`` or ``"colpali-engine"`` instead of detecting.

    Returns:
        The description, or ``None`` (then the text formats apply).

    Raises:
        ModelLoadError: ``fmt`` is imposed but the files do not name a class of that format,
            or a configuration file is malformed.
    """
    folder = Path(folder)
    if fmt is not None and fmt not in VISION_FORMATS:
        return None
    if fmt in (None, "colpali-hf"):
        for arch in _architectures(folder):
            if arch in NATIVE_CLASSES:
                return VisionCheckpoint(folder, "colpali-hf", arch, NATIVE_CLASSES[arch])
    if fmt in (None, "colpali-engine"):
        cls = _engine_class(folder)
        if cls is not None:
            return VisionCheckpoint(folder, "colpali-engine", cls, ENGINE_CLASSES[cls][1])
    if fmt is not None:
        known = sorted(NATIVE_CLASSES) if fmt == "colpali-hf" else sorted(ENGINE_CLASSES)
        raise ModelLoadError(
            f"{str(folder)!r} is not a {fmt!r} checkpoint: its files name none of {known}"
        )
    return None
