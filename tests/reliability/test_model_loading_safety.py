"""A model folder from someone else may hold pickles and Python code: loading it must run
neither.

- ``pytorch_model.bin`` / ``.pt`` files are pickles. ``torch.load(weights_only=True)`` was
  bypassable before torch 2.6 (CVE-2025-32434) and could corrupt memory before 2.10
  (CVE-2026-24747, GHSA-63cw-57p8-fm3p): the dependency floors exclude those releases, and colmax
  refuses to ``torch.load`` anything on an older torch that was installed anyway.
- Safetensors are used whenever a folder has them, even beside a ``.bin``.
- ``trust_remote_code`` is ``False`` explicitly: a ``config.json`` whose ``auto_map`` names a
  Python file in the folder is refused, and that file is never imported.

e83c1de allowed ``torch>=2.2`` and ``transformers>=4.40`` and passed neither option.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import sys
from pathlib import Path

import pytest
import tomllib
import torch

from colmax.encoders import load_encoder
from colmax.errors import ModelLoadError

ROOT = Path(__file__).resolve().parents[2]
HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
from tiny_models import make_tiny_colbert_model, make_tiny_hf_model  # noqa: E402

SAFE_TORCH = (2, 10)


def _floor(requirement: str) -> tuple[int, ...]:
    spec = requirement.split(">=", 1)[1].split(",")[0].strip()
    return tuple(int(p) for p in spec.split(".")[:2])


def test_dependency_floors_exclude_known_unsafe_releases() -> None:
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    by_name = {d.split(">", 1)[0].split("=", 1)[0].strip(): d for d in deps}
    assert _floor(by_name["torch"]) >= SAFE_TORCH, by_name["torch"]
    # transformers refuses torch.load below torch 2.6 from 4.52 on (check_torch_load_is_safe).
    assert _floor(by_name["transformers"]) >= (4, 52), by_name["transformers"]


def test_pickled_weights_are_refused_on_an_unsafe_torch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The projection of a colbert-ai checkpoint saved as ``pytorch_model.bin`` is read with
    ``torch.load``; on a torch below the floor that must not happen at all."""
    folder = make_tiny_colbert_model(tmp_path / "bin", weights="bin")
    assert not list(folder.glob("*.safetensors"))
    load_encoder(str(folder))  # fine on this torch
    monkeypatch.setattr(torch, "__version__", "2.5.1")
    with pytest.raises(ModelLoadError, match="CVE-2025-32434"):
        load_encoder(str(folder))
    # Safetensors need no pickle: still fine.
    load_encoder(str(make_tiny_colbert_model(tmp_path / "st")))


def test_safetensors_are_preferred_to_a_pickle_beside_them(tmp_path: Path) -> None:
    """A ``pytorch_model.bin`` next to ``model.safetensors`` is never unpickled."""
    folder = make_tiny_hf_model(tmp_path / "model")
    marker = tmp_path / "pickle-ran"

    class Trap:
        def __reduce__(self) -> tuple:
            return (Path.touch, (marker,))

    import pickle

    (folder / "pytorch_model.bin").write_bytes(pickle.dumps({"trap": Trap()}))
    load_encoder(str(folder))
    assert not marker.exists()


def test_remote_code_in_a_model_folder_is_never_run(tmp_path: Path) -> None:
    folder = make_tiny_hf_model(tmp_path / "model")
    marker = tmp_path / "code-ran"
    (folder / "evil_model.py").write_text(
        f"from pathlib import Path\nPath({str(marker)!r}).touch()\n"
        "from transformers import BertModel as EvilModel\n"
    )
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {"AutoModel": "evil_model.EvilModel"}
    (folder / "config.json").write_text(json.dumps(config))
    # The library's own BertModel, or a refusal: either way, not the folder's code.
    with contextlib.suppress(ModelLoadError):
        load_encoder(str(folder))
    assert not marker.exists(), "the model folder's Python file was imported"
    shutil.rmtree(folder)
