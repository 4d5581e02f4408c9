"""Checkpoint format detection and the settings read from checkpoint files."""

from __future__ import annotations

import json
import shutil
import string
from pathlib import Path

import pytest

from colmax.encoders import detect_format
from colmax.encoders.detect import read_checkpoint
from colmax.encoders.settings import EncoderSettings, default_settings
from colmax.errors import InvalidInputError, ModelLoadError


def _copy(src: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(src, tmp_path / "model"))


def test_formats_of_the_tiny_fixtures(
    tiny_hf_model: Path, tiny_colbert_model: Path, tiny_pylate_model: Path
) -> None:
    assert detect_format(tiny_hf_model) == "hf"
    assert detect_format(tiny_colbert_model) == "colbert"
    assert detect_format(tiny_pylate_model) == "pylate"


def test_sentence_transformers_pooling_model_is_hf(tiny_hf_model: Path, tmp_path: Path) -> None:
    # The all-MiniLM-L6-v2 layout: Transformer, Pooling, Normalize, no ColBERT keys.
    folder = _copy(tiny_hf_model, tmp_path)
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {
            "idx": 1,
            "name": "1",
            "path": "1_Pooling",
            "type": "sentence_transformers.models.Pooling",
        },
        {"idx": 2, "name": "2", "path": "2_Dense", "type": "sentence_transformers.models.Dense"},
    ]
    (folder / "modules.json").write_text(json.dumps(modules))
    (folder / "config_sentence_transformers.json").write_text(json.dumps({"__version__": {}}))
    assert detect_format(folder) == "hf"


def test_stanford_detected_by_metadata_alone(tiny_colbert_model: Path, tmp_path: Path) -> None:
    folder = _copy(tiny_colbert_model, tmp_path)
    config = json.loads((folder / "config.json").read_text())
    config["architectures"] = ["BertModel"]
    (folder / "config.json").write_text(json.dumps(config))
    assert detect_format(folder) == "colbert"


def test_stanford_detected_by_architecture_alone(tiny_colbert_model: Path, tmp_path: Path) -> None:
    folder = _copy(tiny_colbert_model, tmp_path)
    (folder / "artifact.metadata").unlink()
    info = read_checkpoint(folder)
    assert info.format == "colbert"
    settings = default_settings(info.format, info.read)
    assert (settings.query_prefix, settings.document_prefix) == ("[unused0]", "[unused1]")
    assert (settings.query_length, settings.document_length) == (32, 180)


def test_stanford_metadata_values_are_read(tiny_colbert_model: Path, tmp_path: Path) -> None:
    folder = _copy(tiny_colbert_model, tmp_path)
    meta = json.loads((folder / "artifact.metadata").read_text())
    meta.update(
        query_maxlen=24,
        doc_maxlen=50,
        attend_to_mask_tokens=True,
        mask_punctuation=False,
        query_token_id="[unused1]",
        doc_token_id="[unused0]",
    )
    (folder / "artifact.metadata").write_text(json.dumps(meta))
    info = read_checkpoint(folder)
    s = default_settings(info.format, info.read)
    assert (s.query_length, s.document_length) == (24, 50)
    assert s.attend_to_expansion_tokens is True
    assert s.skiplist_words == ()
    assert (s.query_prefix, s.document_prefix) == ("[unused1]", "[unused0]")


def test_pylate_config_values_are_read(tiny_pylate_model: Path, tmp_path: Path) -> None:
    folder = _copy(tiny_pylate_model, tmp_path)
    path = folder / "config_sentence_transformers.json"
    config = json.loads(path.read_text())
    config.update(
        query_length=20, document_length=40, do_query_expansion=False, skiplist_words=["."]
    )
    path.write_text(json.dumps(config))
    info = read_checkpoint(folder)
    assert info.format == "pylate"
    assert [p.name for p in info.dense_folders] == ["1_Dense"]
    s = default_settings(info.format, info.read)
    assert (s.query_length, s.document_length, s.do_query_expansion) == (20, 40, False)
    assert s.skiplist_words == (".",)
    assert s.query_prefix == "[Q] "


def test_hf_reads_sentence_bert_config(tiny_hf_model: Path) -> None:
    info = read_checkpoint(tiny_hf_model)
    s = default_settings(info.format, info.read)
    assert s.document_length == 64  # max_seq_length of the fixture's sentence_bert_config.json
    assert s.query_length == 32
    assert (s.query_prefix, s.do_query_expansion, s.skiplist_words) == ("", False, ())


def test_forcing_a_format(tiny_colbert_model: Path) -> None:
    assert read_checkpoint(tiny_colbert_model, "hf").format == "hf"
    with pytest.raises(ModelLoadError, match="format must be one of"):
        read_checkpoint(tiny_colbert_model, "onnx")


def test_missing_folder(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="no model folder"):
        detect_format(tmp_path / "absent")


def test_folder_without_config(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("not a model")
    with pytest.raises(ModelLoadError, match=r"no config\.json"):
        detect_format(tmp_path)


def test_malformed_json_names_the_file(tiny_pylate_model: Path, tmp_path: Path) -> None:
    folder = _copy(tiny_pylate_model, tmp_path)
    (folder / "modules.json").write_text("[{")
    with pytest.raises(ModelLoadError, match=r"modules\.json"):
        detect_format(folder)


def test_settings_validation() -> None:
    with pytest.raises(InvalidInputError, match="query_length"):
        EncoderSettings(format="pylate", query_prefix="[Q] ", query_length=2)
    with pytest.raises(InvalidInputError, match="batch_size"):
        EncoderSettings(format="hf", batch_size=0)
    with pytest.raises(InvalidInputError, match="skiplist_words"):
        EncoderSettings(format="hf", skiplist_words=".,")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="format"):
        EncoderSettings(format="onnx")
    with pytest.raises(InvalidInputError, match="unknown encoder setting"):
        EncoderSettings(format="hf").replace(query_len=3)
    # Without expansion there is nothing to attend to (PyLate resets the flag the same way).
    assert not EncoderSettings(
        format="hf", attend_to_expansion_tokens=True
    ).attend_to_expansion_tokens


def test_default_skiplist_is_ascii_punctuation() -> None:
    assert default_settings("pylate").skiplist_words == tuple(string.punctuation)
    assert default_settings("colbert").skiplist_words == tuple(string.punctuation)
    assert default_settings("hf").skiplist_words == ()
