"""sentence-transformers 6 tokenizes texts as given; PyLate (sentence-transformers 5) strips them.

colmax stripped every text, so on a byte-level BPE backbone (RoBERTa, ModernBERT), where a
leading space or a trailing newline is a token of its own, a ``MultiVectorEncoder`` model gave
other vectors than sentence-transformers 6 for such texts (documents read from files end in
``"\\n"``). Here a tiny RoBERTa with a trained byte-level BPE vocabulary, saved by
sentence-transformers 6 itself when installed.
"""

from __future__ import annotations

import string
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from colmax.encoders import load_encoder
from colmax.encoders.settings import default_settings
from colmax.encoders.tokens import TokenPlan

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from tiny_models import make_tiny_bpe_roberta

TEXTS = [
    "the cat sat on the mat",
    "  the cat sat on the mat",
    "the mat\n",
    "\tparis is the capital",
]


@pytest.fixture(scope="module")
def bpe_backbone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("tokenizers")
    return make_tiny_bpe_roberta(tmp_path_factory.mktemp("bpe") / "backbone")


def _plan(backbone: Path, fmt: str) -> TokenPlan:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(backbone))
    settings = default_settings(fmt).replace(query_prefix="", document_prefix="")
    return TokenPlan(
        tokenizer,
        settings,
        query_prefix_id=None,
        document_prefix_id=None,
        expansion_id=tokenizer.mask_token_id,
        skiplist_ids=frozenset(),
    )


def test_only_sentence_transformers_6_keeps_the_whitespace(bpe_backbone: Path) -> None:
    st6 = _plan(bpe_backbone, "sentence-transformers")
    pylate = _plan(bpe_backbone, "pylate")

    def ids(plan: TokenPlan, text: str) -> list[int]:
        return plan.prepare([text], is_query=False)[0].input_ids

    assert ids(st6, "the mat\n") != ids(st6, "the mat")  # "\n" is a byte-level token
    assert ids(st6, "  the mat") != ids(st6, "the mat")
    assert ids(pylate, "  the mat\n") == ids(pylate, "the mat") == ids(st6, "the mat")


def test_spans_of_unstripped_text_index_the_text(bpe_backbone: Path) -> None:
    text = "  the cat\n"
    [prepared] = _plan(bpe_backbone, "sentence-transformers").prepare(
        [text], is_query=False, with_spans=True
    )
    assert prepared.spans is not None
    # The leading "  " and the "\n" are tokens too; the words sit where they are in the text.
    assert prepared.spans[2:4] == [(2, 5), (6, 9)]
    assert [text[s:e] for s, e in filter(None, prepared.spans)][-2:] == ["cat", "\n"]


@pytest.fixture(scope="module")
def st6_bpe_model(bpe_backbone: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The backbone as a ColBERT-style ``MultiVectorEncoder``, saved by sentence-transformers 6."""
    st = pytest.importorskip("sentence_transformers")
    if int(st.__version__.split(".")[0]) < 6:
        pytest.skip("sentence-transformers >= 6 is not installed")
    from sentence_transformers.base.modules import Dense, Normalize, Transformer
    from sentence_transformers.multi_vector_encoder.modules import MultiVectorMask

    transformer = Transformer(
        str(bpe_backbone),
        document_length=64,
        query_expansion={"strategy": "fixed", "attend": False, "length": 16},
    )
    modules = [
        transformer,
        Dense(
            32,
            16,
            bias=False,
            activation_function=torch.nn.Identity(),
            module_input_name="token_embeddings",
        ),
        MultiVectorMask(skiplist_words=list(string.punctuation)),
        Normalize(module_input_name="token_embeddings"),
    ]
    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("st6_bpe") / "model"
    st.MultiVectorEncoder(modules=modules, device="cpu").save(str(folder))
    return folder


def test_same_vectors_as_sentence_transformers_6(st6_bpe_model: Path) -> None:
    import sentence_transformers as st

    reference = st.MultiVectorEncoder(str(st6_bpe_model), device="cpu")
    encoder = load_encoder(st6_bpe_model, device="cpu", dtype="float32")
    assert encoder.format == "sentence-transformers"
    pairs = [
        (reference.encode_document(TEXTS), encoder.encode_documents(TEXTS)),
        (reference.encode_query(TEXTS), encoder.encode_queries(TEXTS)),
    ]
    for want_all, got_all in pairs:
        for text, want, got in zip(TEXTS, want_all, got_all, strict=True):
            assert got.shape == tuple(np.asarray(want).shape), text
            np.testing.assert_allclose(got.numpy(), np.asarray(want), atol=1e-5, err_msg=text)
