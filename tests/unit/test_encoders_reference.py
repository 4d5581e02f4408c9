"""Known answers: vectors recomputed by hand with transformers, and formats checked against
each other; plus the Hub code path (patched at the download boundary) and load errors."""

from __future__ import annotations

import json
import shutil
import string
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file, save_file
from transformers import BertConfig, BertModel, BertTokenizerFast

import colmax.encoders.hub as hub
from colmax.encoders import load_encoder
from colmax.errors import ModelLoadError
from tiny_models import TINY_VOCAB


def _manual(folder: Path, ids: list[int], attention: list[int], keep: list[int]) -> torch.Tensor:
    """BERT + linear + keep + L2-normalise, straight from the colbert-ai files."""
    state = load_file(str(folder / "model.safetensors"))
    config = BertConfig.from_dict(json.loads((folder / "config.json").read_text()))
    model = BertModel(config).eval()
    model.load_state_dict(
        {k.removeprefix("bert."): v for k, v in state.items() if k.startswith("bert.")}
    )
    with torch.no_grad():
        hidden = model(
            input_ids=torch.tensor([ids]),
            attention_mask=torch.tensor([attention]),
            token_type_ids=torch.zeros(1, len(ids), dtype=torch.long),
        ).last_hidden_state[0]
    projected = hidden @ state["linear.weight"].T
    return torch.nn.functional.normalize(projected[keep], dim=-1)


def test_hand_computed_document(tiny_colbert_model: Path) -> None:
    vocab = {t: i for i, t in enumerate(TINY_VOCAB)}
    text = "Hello, world! The cat sat."
    words = ["hello", ",", "world", "!", "the", "cat", "sat", "."]
    ids = [vocab["[CLS]"], vocab["[unused1]"], *(vocab[w] for w in words), vocab["[SEP]"]]
    keep = [i for i, t in enumerate(ids) if TINY_VOCAB[t] not in string.punctuation]
    expected = _manual(tiny_colbert_model, ids, [1] * len(ids), keep)
    got = load_encoder(tiny_colbert_model, dtype="float32").encode_documents([text])[0]
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_hand_computed_query(tiny_colbert_model: Path) -> None:
    vocab = {t: i for i, t in enumerate(TINY_VOCAB)}
    real = [
        vocab["[CLS]"],
        vocab["[unused0]"],
        vocab["what"],
        vocab["is"],
        vocab["a"],
        vocab["cat"],
        vocab["?"],
        vocab["[SEP]"],
    ]
    ids = real + [vocab["[MASK]"]] * (32 - len(real))
    attention = [1] * len(real) + [0] * (32 - len(real))
    expected = _manual(tiny_colbert_model, ids, attention, list(range(32)))
    got = load_encoder(tiny_colbert_model, dtype="float32").encode_queries(["  What is a cat?"])[0]
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_pylate_and_colbert_layouts_agree(
    tiny_colbert_model: Path, tiny_pylate_model: Path
) -> None:
    # Same backbone and projection: with the same markers the two layouts give the same vectors.
    texts = ["the cat sat on the mat.", "what is the capital of france?"]
    colbert = load_encoder(tiny_colbert_model, dtype="float32")
    pylate = load_encoder(
        tiny_pylate_model, query_prefix="[unused0]", document_prefix="[unused1]", dtype="float32"
    )
    for a, b in zip(
        colbert.encode_queries(texts) + colbert.encode_documents(texts),
        pylate.encode_queries(texts) + pylate.encode_documents(texts),
        strict=True,
    ):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    # ... and their own markers make a difference.
    own = load_encoder(tiny_pylate_model, dtype="float32").encode_documents(texts)[0]
    assert not torch.allclose(own, colbert.encode_documents(texts)[0], atol=1e-3)


def test_pylate_dense_with_bias_and_tanh(tiny_pylate_model: Path, tmp_path: Path) -> None:
    folder = Path(shutil.copytree(tiny_pylate_model, tmp_path / "m"))
    config_path = folder / "1_Dense" / "config.json"
    config = json.loads(config_path.read_text())
    config.update(bias=True, activation_function="torch.nn.modules.activation.Tanh")
    config_path.write_text(json.dumps(config))
    state = load_file(str(folder / "1_Dense" / "model.safetensors"))
    state["linear.bias"] = torch.linspace(-1, 1, state["linear.weight"].shape[0])
    save_file(state, str(folder / "1_Dense" / "model.safetensors"))
    plain = load_encoder(tiny_pylate_model, normalize=False, dtype="float32")
    tanh = load_encoder(folder, normalize=False, dtype="float32")
    # Recompute from the plain (Identity, no bias) projection: tanh(x + b).
    base = plain.encode_documents(["the cat sat"])[0]
    torch.testing.assert_close(
        tanh.encode_documents(["the cat sat"])[0], torch.tanh(base + state["linear.bias"])
    )


def test_hf_matches_transformers_directly(tiny_hf_model: Path) -> None:
    tok = BertTokenizerFast.from_pretrained(str(tiny_hf_model))
    model = BertModel.from_pretrained(str(tiny_hf_model)).eval()
    batch = tok(["the cat sat on the mat"], return_tensors="pt")
    with torch.no_grad():
        expected = torch.nn.functional.normalize(model(**batch).last_hidden_state[0], dim=-1)
    got = load_encoder(tiny_hf_model, dtype="float32").encode_documents(["the cat sat on the mat"])[
        0
    ]
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)


def test_missing_backbone_weights_are_refused(tiny_hf_model: Path, tmp_path: Path) -> None:
    folder = Path(shutil.copytree(tiny_hf_model, tmp_path / "m"))
    state = load_file(str(folder / "model.safetensors"))
    save_file(
        {k: v for k, v in state.items() if "layer.1." not in k}, str(folder / "model.safetensors")
    )
    with pytest.raises(ModelLoadError, match="missing"):
        load_encoder(folder)


def test_missing_folder_is_not_sent_to_the_hub(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    def refuse(**_: object) -> str:
        raise AssertionError("a local path must not be looked up on the Hub")

    monkeypatch.setattr(hub.huggingface_hub, "snapshot_download", refuse)
    with pytest.raises(ModelLoadError, match="no model folder"):
        load_encoder(tmp_path / "absent")
    with pytest.raises(ModelLoadError, match="is a file"):
        (tmp_path / "file").write_text("x")
        load_encoder(tmp_path / "file")


def test_hub_id_is_downloaded(monkeypatch: pytest.MonkeyPatch, tiny_colbert_model: Path) -> None:
    calls: list[dict[str, object]] = []

    def fake_snapshot(**kwargs: object) -> str:
        calls.append(kwargs)
        return str(tiny_colbert_model)

    monkeypatch.setattr(hub.huggingface_hub, "snapshot_download", fake_snapshot)
    enc = load_encoder("someone/tiny-colbert", revision="v1")
    assert calls[0]["repo_id"] == "someone/tiny-colbert" and calls[0]["revision"] == "v1"
    assert enc.name == "someone/tiny-colbert" and enc.format == "colbert"
    assert enc.config()["model_name_or_path"] == "someone/tiny-colbert"
    assert enc.config()["revision"] == "v1"


def test_hub_failure_becomes_model_load_error(monkeypatch: pytest.MonkeyPatch) -> None:
    def offline(**_: object) -> str:
        raise OSError("offline mode is enabled")

    monkeypatch.setattr(hub.huggingface_hub, "snapshot_download", offline)
    with pytest.raises(ModelLoadError, match="offline mode"):
        load_encoder("someone/absent-model")
