"""Recognise a checkpoint's format from its files and read the settings it records.

Four layouts are understood:

- ``"sentence-transformers"``: a folder saved by sentence-transformers 6's
  ``MultiVectorEncoder`` (``config_sentence_transformers.json`` with
  ``model_type: "MultiVectorEncoder"``, or a ``MultiVectorMask`` module); read by
  :mod:`colmax.encoders.st_format`.
- ``"pylate"``: a sentence-transformers folder (``modules.json``) whose modules are a
  ``Transformer`` followed by one or more ``Dense`` projections applied to every token, and
  whose ``config_sentence_transformers.json`` holds PyLate's ColBERT keys (``query_prefix``,
  ``query_length``, ...). This is what ``pylate.models.ColBERT.save`` writes.
- ``"colbert"``: a colbert-ai (Stanford) checkpoint: ``config.json`` with
  ``architectures: ["HF_ColBERT"]`` and/or ``artifact.metadata``, the backbone weights under a
  ``bert.``-style prefix plus a bias-free ``linear.weight`` projection in the same file.
- ``"hf"``: anything else with a ``config.json``, including sentence-transformers models whose
  modules pool the tokens into one vector (all-MiniLM-L6-v2): used zero-shot, token by token.

Precedence: a ``MultiVectorEncoder`` folder is read as such (sentence-transformers 6 reads its
own format first too); then PyLate's loader order: listed ``Dense`` modules win over
``HF_ColBERT`` weights.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from colmax.encoders import st_format
from colmax.encoders.settings import FORMATS
from colmax.errors import ModelLoadError

__all__ = ["CheckpointInfo", "detect_format", "read_checkpoint"]

logger = logging.getLogger(__name__)

# Keys of config_sentence_transformers.json that PyLate reads, under colmax's names.
_PYLATE_KEYS = (
    "query_prefix",
    "document_prefix",
    "query_length",
    "document_length",
    "do_query_expansion",
    "attend_to_expansion_tokens",
    "skiplist_words",
)

# artifact.metadata key -> colmax setting (colbert-ai's ColBERTConfig names).
_STANFORD_KEYS = {
    "query_token_id": "query_prefix",
    "doc_token_id": "document_prefix",
    "query_maxlen": "query_length",
    "doc_maxlen": "document_length",
    "attend_to_mask_tokens": "attend_to_expansion_tokens",
}


@dataclass(frozen=True)
class CheckpointInfo:
    """What the files of a model folder say.

    Attributes:
        folder: the model folder.
        format: one of :data:`~colmax.encoders.settings.FORMATS`.
        backbone: folder with the transformer's ``config.json``, weights and tokenizer.
        dense_folders: PyLate / sentence-transformers projection module folders, in
            ``modules.json`` order.
        read: settings recorded in the files (only the keys found).
        expansion_token: the query expansion token a ``MultiVectorEncoder`` folder names
            (``None``: the tokenizer's mask token).
    """

    folder: Path
    format: str
    backbone: Path
    dense_folders: tuple[Path, ...] = ()
    read: dict[str, Any] = field(default_factory=dict)
    expansion_token: str | None = None


def _read_json(path: Path) -> Any:
    """Parsed JSON file, or None when the file is absent."""
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"{str(path)!r} is not valid JSON: {exc}") from exc


def _modules(folder: Path) -> list[dict[str, Any]] | None:
    modules = _read_json(folder / "modules.json")
    if modules is None:
        return None
    if not isinstance(modules, list) or not all(
        isinstance(m, dict) and isinstance(m.get("type"), str) for m in modules
    ):
        raise ModelLoadError(f"{str(folder / 'modules.json')!r} is not a list of modules")
    for module in modules:
        _check_module_path(folder, module.get("path", ""))
    return modules


def _check_module_path(folder: Path, path: Any) -> None:
    """A module folder must be the model folder or inside it: an absolute path or ``..``
    would load weights and settings from anywhere on the machine."""
    where = repr(str(folder / "modules.json"))
    if not isinstance(path, str):
        raise ModelLoadError(f"{where}: a module path must be a string, got {path!r}")
    root = folder.resolve()
    target = (folder / path).resolve()
    if (
        PurePosixPath(path).is_absolute()
        or Path(path).is_absolute()
        or (target != root and root not in target.parents)
    ):
        raise ModelLoadError(
            f"{where}: module path {path!r} is outside the model folder; refusing to load it"
        )


def _kind(module: dict[str, Any]) -> str:
    """Last component of a module's class path: ``Transformer``, ``Dense``, ``Pooling``, ..."""
    return str(module["type"]).rsplit(".", 1)[-1]


def _architectures(backbone: Path) -> list[str]:
    config = _read_json(backbone / "config.json")
    if not isinstance(config, dict):
        return []
    return [str(a) for a in config.get("architectures") or []]


def _backbone_folder(folder: Path, modules: list[dict[str, Any]] | None) -> Path:
    for module in modules or []:
        if _kind(module) == "Transformer":
            return folder / str(module.get("path", ""))
    return folder


def _st_config(folder: Path) -> dict[str, Any]:
    config = _read_json(folder / "config_sentence_transformers.json")
    return config if isinstance(config, dict) else {}


def detect_format(folder: str | Path) -> str:
    """Name the checkpoint format of a model folder.

    Args:
        folder: a local model folder.

    Returns:
        One of :data:`~colmax.encoders.settings.FORMATS`.

    Raises:
        ModelLoadError: the folder does not exist or has no ``config.json``.
    """
    folder = Path(folder)
    modules = _modules(folder)
    backbone = _check_backbone(folder, modules)
    st_config = _st_config(folder)
    if st_format.is_multi_vector_encoder(st_config, modules or []):
        return st_format.FORMAT
    colbert_config = st_config.get("model_type") == "ColBERT" or any(
        k in st_config for k in _PYLATE_KEYS
    )
    kinds = [_kind(m) for m in modules or []]
    stanford = "HF_ColBERT" in _architectures(backbone) or (folder / "artifact.metadata").is_file()
    if "Dense" in kinds and (colbert_config or "Pooling" not in kinds):
        return "pylate"
    if stanford:
        return "colbert"
    if colbert_config:
        return "pylate"
    return "hf"


def _check_backbone(folder: Path, modules: list[dict[str, Any]] | None) -> Path:
    if not folder.is_dir():
        raise ModelLoadError(f"no model folder at {str(folder)!r}")
    backbone = _backbone_folder(folder, modules)
    if not (backbone / "config.json").is_file():
        raise ModelLoadError(
            f"{str(folder)!r} is not a model folder: no config.json in {str(backbone)!r}"
        )
    return backbone


def read_checkpoint(folder: str | Path, fmt: str | None = None) -> CheckpointInfo:
    """Detect (or impose) the format of a folder and read the settings its files record.

    Args:
        folder: a local model folder.
        fmt: force this format instead of detecting it (for example ``"hf"`` to use a ColBERT
            checkpoint's backbone zero-shot).

    Returns:
        The checkpoint description.

    Raises:
        ModelLoadError: not a model folder, or malformed configuration files.
    """
    folder = Path(folder)
    fmt = fmt or detect_format(folder)
    if fmt not in FORMATS:
        raise ModelLoadError(f"format must be one of {FORMATS}, got {fmt!r}")
    modules = _modules(folder)
    backbone = _check_backbone(folder, modules)
    read = _read_sbert_config(backbone, fmt)
    dense: tuple[Path, ...] = ()
    expansion_token = None
    if fmt == st_format.FORMAT:
        found, dense, expansion_token = st_format.read_multi_vector_encoder(
            folder, modules or [], backbone
        )
        read.update(found)
    elif fmt == "pylate":
        st_config = _st_config(folder)
        read.update({k: v for k, v in st_config.items() if k in _PYLATE_KEYS})
        read.update(_read_default_prompt(folder, st_config))
        dense = _dense_folders(folder, modules or [])
        if not dense:
            logger.warning(
                "%s has PyLate settings but no Dense projection: using the transformer's "
                "hidden states (PyLate would add an untrained random projection here)",
                folder,
            )
    elif fmt == "colbert":
        read.update(_read_stanford_metadata(folder))
    return CheckpointInfo(
        folder=folder,
        format=fmt,
        backbone=backbone,
        dense_folders=dense,
        read=read,
        expansion_token=expansion_token,
    )


def _read_default_prompt(folder: Path, st_config: dict[str, Any]) -> dict[str, Any]:
    """``prompt``: the text PyLate's ``encode`` prepends to every query and document.

    PyLate (on sentence-transformers 5) prepends ``prompts[default_prompt_name]`` to each text
    when ``encode`` gets no prompt, queries and documents alike, before its marker goes in after
    ``[CLS]``; the ``"query"`` / ``"document"`` prompts apply only when named in the call.
    """
    name = st_config.get("default_prompt_name")
    if not name:  # None or "": no default prompt, for sentence-transformers too
        return {}
    where = repr(str(folder / "config_sentence_transformers.json"))
    prompts = st_config.get("prompts") or {}
    if not isinstance(prompts, dict) or name not in prompts:
        # sentence-transformers refuses to load such a model too.
        raise ModelLoadError(f"{where}: default_prompt_name {name!r} is not one of its prompts")
    prompt = prompts[name]
    if not isinstance(prompt, str):
        raise ModelLoadError(f"{where}: prompt {name!r} must be a string, got {prompt!r}")
    return {"prompt": prompt}


def _read_sbert_config(backbone: Path, fmt: str) -> dict[str, Any]:
    """``do_lower_case`` (every format) and ``max_seq_length`` (zero-shot ``"hf"`` only).

    PyLate overrides ``max_seq_length`` with its own query/document lengths, so it only
    matters for plain sentence-transformers models.
    """
    config = _read_json(backbone / "sentence_bert_config.json")
    if not isinstance(config, dict):
        return {}
    read: dict[str, Any] = {}
    if isinstance(config.get("do_lower_case"), bool):
        read["do_lower_case"] = config["do_lower_case"]
    if fmt == "hf" and isinstance(config.get("max_seq_length"), int):
        read["document_length"] = config["max_seq_length"]
    return read


def _dense_folders(folder: Path, modules: list[dict[str, Any]]) -> tuple[Path, ...]:
    found = []
    for module in modules:
        kind = _kind(module)
        if kind == "Dense":
            found.append(folder / str(module.get("path", "")))
        elif kind != "Transformer":
            # PyLate keeps only Transformer and Dense modules (ColBERT._load_sbert_model).
            logger.info(
                "Ignoring module %s (%s), as PyLate does", module.get("path"), module["type"]
            )
    return tuple(found)


def _read_stanford_metadata(folder: Path) -> dict[str, Any]:
    metadata = _read_json(folder / "artifact.metadata")
    if metadata is None:
        logger.warning("%s has no artifact.metadata: using colbert-ai's default markers", folder)
        return {}
    if not isinstance(metadata, dict):
        raise ModelLoadError(f"{str(folder / 'artifact.metadata')!r} is not a JSON object")
    read = {ours: metadata[theirs] for theirs, ours in _STANFORD_KEYS.items() if theirs in metadata}
    # colbert-ai drops punctuation from documents only when mask_punctuation is set (its
    # default, and the value of every released checkpoint); PyLate always drops it.
    if metadata.get("mask_punctuation") is False:
        read["skiplist_words"] = ()
    return read
