"""PyLate's default prompt: ``prompts[default_prompt_name]`` in
``config_sentence_transformers.json`` is prepended to every query and document.

PyLate's ``encode`` does that (the marker then goes in after ``[CLS]``, and the prompt's tokens
count in the lengths and become vectors); colmax ignored the prompt, so a model trained with one
got other vectors than PyLate's. ``tests/peers`` compare with PyLate itself; here the prompted
encoder must equal the same weights without the prompt setting given ``prompt + text``.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from colmax.encoders import load_encoder
from colmax.encoders.detect import read_checkpoint
from colmax.errors import ModelLoadError

PROMPT = "search the document: "
TEXTS = ["what is late interaction?", "  the cat sat on the mat.\n", "hello world"]


def _with_prompts(folder: Path, **entries: object) -> Path:
    path = folder / "config_sentence_transformers.json"
    config = json.loads(path.read_text())
    config.update(entries)
    path.write_text(json.dumps(config))
    return folder


@pytest.fixture
def prompted(tiny_pylate_model: Path, tmp_path: Path) -> Path:
    folder = Path(shutil.copytree(tiny_pylate_model, tmp_path / "prompted"))
    prompts = {"query": "a query: ", "document": "a document: ", "retrieval": PROMPT}
    return _with_prompts(folder, prompts=prompts, default_prompt_name="retrieval")


def test_the_default_prompt_is_read(prompted: Path, tiny_pylate_model: Path) -> None:
    assert read_checkpoint(prompted).read["prompt"] == PROMPT
    assert "prompt" not in read_checkpoint(tiny_pylate_model).read
    assert load_encoder(tiny_pylate_model, device="cpu").settings.prompt == ""


def test_the_prompt_is_prepended_to_queries_and_documents(
    prompted: Path, tiny_pylate_model: Path
) -> None:
    encoder = load_encoder(prompted, device="cpu")
    plain = load_encoder(tiny_pylate_model, device="cpu")
    assert encoder.settings.prompt == PROMPT
    by_hand = [PROMPT + t for t in TEXTS]
    for got, want in zip(encoder.encode_queries(TEXTS), plain.encode_queries(by_hand)):
        torch.testing.assert_close(got, want, atol=1e-6, rtol=0)
    for got, want in zip(encoder.encode_documents(TEXTS), plain.encode_documents(by_hand)):
        torch.testing.assert_close(got, want, atol=1e-6, rtol=0)
    # [CLS] [D] search the document hello world [SEP]: the prompt's ":" is in the skiplist.
    assert encoder.encode_documents(["hello world"])[0].shape[0] == 8


def test_token_spans_point_into_the_text_not_the_prompt(prompted: Path) -> None:
    encoder = load_encoder(prompted, device="cpu")
    text = "  the cat sat"
    spans = encoder.token_spans([text])[0]
    assert spans[:5] == [None] * 5  # [CLS], [D], then the prompt's "search the document"
    assert [text[span[0] : span[1]] for span in spans[5:-1] if span] == ["the", "cat", "sat"]
    assert spans[-1] is None  # [SEP]


def test_the_prompt_survives_a_reload_and_can_be_overridden(prompted: Path) -> None:
    encoder = load_encoder(prompted, device="cpu")
    again = load_encoder(**encoder.config(), device="cpu")
    assert again.settings.prompt == PROMPT
    assert load_encoder(prompted, device="cpu", prompt="").settings.prompt == ""


def test_a_default_prompt_name_without_its_prompt_is_refused(
    tiny_pylate_model: Path, tmp_path: Path
) -> None:
    folder = Path(shutil.copytree(tiny_pylate_model, tmp_path / "bad"))
    _with_prompts(folder, prompts={"query": "q: "}, default_prompt_name="retrieval")
    with pytest.raises(ModelLoadError, match="default_prompt_name 'retrieval'"):
        load_encoder(folder, device="cpu")


def test_an_index_written_before_the_prompt_setting_keeps_encoding_without_it(
    prompted: Path, tmp_path: Path
) -> None:
    # Its documents were encoded without the prompt: its queries must be too after an upgrade,
    # or they would not match the stored vectors' encoding.
    from colmax import Engine

    path = tmp_path / "idx"
    with Engine.from_pretrained(prompted, device="cpu", path=path, prompt="") as engine:
        engine.add(TEXTS, ids=["a", "b", "c"])
    manifest = json.loads((path / "manifest.json").read_text())
    del manifest["encoder"]["prompt"]  # as a manifest written before the setting existed
    (path / "manifest.json").write_text(json.dumps(manifest))
    with Engine.load(path, device="cpu") as old:
        assert old.encoder is not None and old.encoder.settings.prompt == ""
    with Engine.from_pretrained(prompted, device="cpu", path=tmp_path / "new") as new:
        new.add(TEXTS[:1], ids=["a"])
    with Engine.load(tmp_path / "new", device="cpu") as reloaded:
        assert reloaded.encoder is not None and reloaded.encoder.settings.prompt == PROMPT
