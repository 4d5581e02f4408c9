"""sentence-transformers 6 ``MultiVectorEncoder`` folders: detection, settings, refusals.

The folders are the hand-written ``make_tiny_st_model`` layout (no sentence-transformers needed
here); ``tests/peers/test_parity_st6.py`` checks the same layout, and folders saved by the real
library, against sentence-transformers' own encoding.
"""

from __future__ import annotations

import json
import string
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from colmax import Engine
from colmax.encoders import detect_format, load_encoder
from colmax.encoders.detect import read_checkpoint
from colmax.errors import ModelLoadError

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tiny_models import make_tiny_st_model

TEXTS = ["what is late interaction?", "the cat, the mat; and a dog!", "hello world"]


@pytest.fixture(scope="module")
def tiny_st_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_tiny_st_model(tmp_path_factory.mktemp("tiny_st"))


def _make(tmp_path: Path, **kwargs: Any) -> Path:
    return make_tiny_st_model(tmp_path / "model", **kwargs)


def test_detected_and_settings_read(tiny_st_model: Path) -> None:
    assert detect_format(tiny_st_model) == "sentence-transformers"
    info = read_checkpoint(tiny_st_model)
    assert info.dense_folders == (tiny_st_model / "1_Dense",)
    assert info.read["query_prefix"] == "[Q] " and info.read["document_prefix"] == "[D] "
    assert info.read["query_length"] == 32 and info.read["document_length"] == 180
    assert info.read["do_query_expansion"] is True
    assert info.read["attend_to_expansion_tokens"] is False
    assert info.read["skiplist_words"] == tuple(string.punctuation)
    assert info.read["normalize"] is True


def test_same_vectors_as_the_pylate_layout(tiny_st_model: Path, tiny_pylate_model: Path) -> None:
    """Same weights, same conventions (markers, expansion, skiplist): the same vectors."""
    st = load_encoder(tiny_st_model, device="cpu")
    pylate = load_encoder(tiny_pylate_model, device="cpu")
    assert st.format == "sentence-transformers"
    for a, b in zip(st.encode_queries(TEXTS), pylate.encode_queries(TEXTS)):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)
    for a, b in zip(st.encode_documents(TEXTS), pylate.encode_documents(TEXTS)):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=0)


def test_no_prompt_no_expansion_lengths_from_the_tokenizer(tmp_path: Path) -> None:
    folder = _make(
        tmp_path, prompts={"query": "", "document": ""}, query_expansion=None, skiplist_words=[]
    )
    (folder / "sentence_bert_config.json").write_text(
        json.dumps({"transformer_task": "feature-extraction"})
    )
    encoder = load_encoder(folder, device="cpu")
    settings = encoder.plan.settings
    # MultiVectorEncoder with no lengths cuts at the tokenizer's model_max_length (512 here).
    assert (settings.query_length, settings.document_length) == (512, 512)
    assert (settings.query_prefix, settings.do_query_expansion) == ("", False)
    [query] = encoder.encode_queries(["the cat sat"])
    assert query.shape[0] == 5  # [CLS] the cat sat [SEP]: no marker, no [MASK]
    [doc] = encoder.encode_documents(["the cat, sat"])
    assert doc.shape[0] == 6  # no skiplist: the comma stays


def test_without_normalize_vectors_keep_their_norm(tmp_path: Path) -> None:
    encoder = load_encoder(_make(tmp_path, normalize=False), device="cpu")
    assert encoder.plan.settings.normalize is False
    norms = encoder.encode_documents(TEXTS)[0].norm(dim=-1)
    assert not torch.allclose(norms, torch.ones_like(norms))


def test_skiplist_words_outside_the_vocabulary_are_ignored(tmp_path: Path) -> None:
    """sentence-transformers drops them; PyLate would map them to [UNK] and drop [UNK] tokens."""
    encoder = load_encoder(_make(tmp_path, skiplist_words=[",", "zebra"]), device="cpu")
    assert encoder.plan.settings.skiplist_words == (",",)
    [doc] = encoder.encode_documents(["the zebra, the cat"])
    assert doc.shape[0] == 7  # [CLS] [D] the [UNK] the cat [SEP]: [UNK] kept, comma dropped


def test_skiplist_for_no_task_drops_nothing(tmp_path: Path) -> None:
    """``skiplist_tasks: []`` applies the skiplist to no task (sentence-transformers 6); it
    was read as ``["document"]``. A missing key still means documents."""
    encoder = load_encoder(_make(tmp_path, mask={"skiplist_tasks": []}), device="cpu")
    assert encoder.plan.settings.skiplist_words == ()
    [doc] = encoder.encode_documents(["the cat, the mat"])
    assert doc.shape[0] == 8  # [CLS] [D] the cat , the mat [SEP]: the comma stays


def test_index_records_and_reloads_the_format(tiny_st_model: Path, tmp_path: Path) -> None:
    engine = Engine.from_pretrained(tiny_st_model, device="cpu")
    engine.add(TEXTS, ids=["a", "b", "c"])
    engine.save(tmp_path / "index")
    reopened = Engine.load(tmp_path / "index", device="cpu")
    assert reopened.encoder is not None and engine.encoder is not None
    assert reopened.encoder.config() == engine.encoder.config()
    assert reopened.encoder.config()["format"] == "sentence-transformers"
    assert [h.id for h in reopened.search(TEXTS[0], k=1)] == ["a"]  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"prompts": {"query": "query: ", "document": ""}}, "prompt 'query: ' is 2 tokens"),
        (
            {"query_expansion": {"strategy": "min", "length": 32}},
            "strategy 'min' is not supported",
        ),
        (
            {"query_expansion": {"strategy": "fixed", "length": 32, "token": "[PAD]"}},
            "query expansion with '[PAD]' is not supported",
        ),
        ({"transformer": {"transformer_task": "retrieval"}}, "transformer_task 'retrieval'"),
        ({"transformer": {"processing_kwargs": {"text": {"max_length": 8}}}}, "processing_kwargs"),
        ({"mask": {"skiplist_tasks": ["query", "document"]}}, "skiplist_tasks"),
        ({"mask": {"keep_only_token_ids": [5]}}, "keep_only_token_ids"),
        (
            {
                "extra_modules": [
                    {
                        "idx": 4,
                        "name": "4",
                        "path": "4_Pool",
                        "type": "sentence_transformers.multi_vector_encoder.modules."
                        "token_pooling.HierarchicalTokenPooling",
                    }
                ]
            },
            "pool_factor",
        ),
    ],
    ids=[
        "multi-token-prompt",
        "min-expansion",
        "other-expansion-token",
        "retrieval-backbone",
        "processing-kwargs",
        "query-skiplist",
        "keep-only-ids",
        "token-pooling-module",
    ],
)
def test_what_colmax_does_not_reproduce_is_refused(
    tmp_path: Path, kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(ModelLoadError, match=message.replace("(", r"\(").replace("[", r"\[")):
        load_encoder(_make(tmp_path, **kwargs), device="cpu")


def test_dense_after_normalize_is_refused(tiny_st_model: Path, tmp_path: Path) -> None:
    folder = _make(tmp_path)
    modules = json.loads((folder / "modules.json").read_text())
    modules[1], modules[3] = modules[3], modules[1]
    (folder / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(ModelLoadError, match="Dense module after Normalize"):
        read_checkpoint(folder)
