"""Resolve a model name to a local folder: a folder on disk, or a Hugging Face Hub snapshot."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import huggingface_hub

from colmax.errors import ModelLoadError

__all__ = ["resolve_model_folder"]

logger = logging.getLogger(__name__)

# "name" or "owner/name", the shape of a Hub repository id.
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)?$")

# Alternative exports some repositories carry beside the PyTorch weights; never needed here.
_IGNORE_PATTERNS = [
    "onnx/*",
    "openvino/*",
    "*.onnx",
    "*.msgpack",
    "*.h5",
    "*.ot",
    "*.tflite",
    "*.mlmodel",
    "*.gguf",
]


def resolve_model_folder(
    model_name_or_path: str, *, revision: str | None = None, download: bool = True
) -> Path:
    """Return a local folder holding the model's files.

    A path that exists is used as is. Anything else shaped like a Hub id (``"owner/name"``) is
    fetched with :func:`huggingface_hub.snapshot_download` (which reuses the local cache and
    honours ``HF_HUB_OFFLINE``).

    Args:
        model_name_or_path: a local folder or a Hugging Face Hub repository id.
        revision: Hub branch, tag or commit (ignored for local folders).
        download: fetch a Hub model that is not in the local cache. ``False`` uses the cache
            only, with no network request at all (``Engine.load`` does this by default: the
            model name there comes from a file, not from the caller).

    Returns:
        The folder.

    Raises:
        ModelLoadError: the path is a file, or it does not exist and is not a Hub id, or the
            download failed.
    """
    if not isinstance(model_name_or_path, str | Path) or not str(model_name_or_path).strip():
        raise ModelLoadError(
            f"model_name_or_path must be a folder or a Hub id, got {model_name_or_path!r}"
        )
    path = Path(model_name_or_path).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise ModelLoadError(f"{str(path)!r} is a file, not a model folder")
    name = str(model_name_or_path)
    if not _HUB_ID.match(name) or name.startswith((".", "~")):
        raise ModelLoadError(
            f"no model folder at {name!r} (and it is not a Hugging Face Hub id like 'owner/name')"
        )
    if not download:
        try:
            folder = huggingface_hub.snapshot_download(
                repo_id=name,
                revision=revision,
                ignore_patterns=_IGNORE_PATTERNS,
                local_files_only=True,
            )
        except Exception as exc:
            raise ModelLoadError(
                f"the model {name!r} is neither a local folder nor in the Hugging Face cache, "
                "and downloading was not asked for: pass download=True (colmax: --download), "
                "or fetch it first (huggingface-cli download), if you trust it"
            ) from exc
        return Path(folder)
    logger.info("Fetching %s (revision %s) from the Hugging Face Hub", name, revision or "main")
    try:
        folder = huggingface_hub.snapshot_download(
            repo_id=name, revision=revision, ignore_patterns=_IGNORE_PATTERNS
        )
    except Exception as exc:  # network, auth, offline mode, missing repo: all one story.
        raise ModelLoadError(
            f"no local folder {name!r} and downloading it from the Hugging Face Hub failed: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    return Path(folder)
