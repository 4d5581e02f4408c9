"""A model folder whose vocabulary files are missing or broken is refused at load.

transformers 5 builds a tokenizer of special tokens only for such a folder, without an error:
every word became one id and the vectors were garbage (searches ranked at random), or every
encode raised a bare ``Exception`` ("WordPiece error: Missing [UNK] token")."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from colmax.encoders import load_encoder
from colmax.errors import ModelLoadError


@pytest.fixture
def model(tiny_colbert_model: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(tiny_colbert_model, tmp_path / "model"))


@pytest.mark.parametrize(
    "drop",
    [
        ["tokenizer.json", "vocab.txt"],
        ["tokenizer.json", "vocab.txt", "tokenizer_config.json"],
    ],
    ids=["vocabulary-files", "all-tokenizer-files"],
)
def test_missing_vocabulary_is_refused(model: Path, drop: list[str]) -> None:
    for name in drop:
        (model / name).unlink(missing_ok=True)
    with pytest.raises(ModelLoadError, match=r"vocabulary files .* are missing or broken"):
        load_encoder(model, device="cpu")


def test_empty_vocabulary_is_refused(model: Path) -> None:
    (model / "tokenizer.json").unlink()
    (model / "vocab.txt").write_text("")
    with pytest.raises(ModelLoadError, match=r"vocabulary files"):
        load_encoder(model, device="cpu")


def test_the_complete_folder_still_loads(model: Path) -> None:
    encoder = load_encoder(model, device="cpu")
    vectors = encoder.encode_documents(["the cat sat", "a red car"])
    assert vectors[0].shape[0] != vectors[1].shape[0] or not vectors[0].equal(vectors[1])
