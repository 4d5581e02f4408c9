"""sentence-transformers 6 tokenizes texts as given; PyLate (sentence-transformers 5) strips them.

colmax stripped every text, so on a byte-level BPE backbone (RoBERTa, ModernBERT), where a
leading space or a trailing newline is a token of its own, a ``MultiVectorEncoder`` model gave
other vectors than sentence-transformers 6 for such texts (documents read from files end in
``"\\n"``). Here a tiny RoBERTa with a trained byte-level BPE vocabulary, saved by
sentence-transformers 6 itself when installed.
"""

from __future__ import annotations

import string
from pathlib import Path

import numpy as np
import pytest
import torch

from colmax.encoders import load_encoder
from colmax.encoders.settings import default_settings
from colmax.encoders.tokens import TokenPlan

TEXTS = [
    "the cat sat on the mat",
    "  the cat sat on the mat",
    "the mat\n",
    "\tparis is the capital",
]


def _bpe_roberta(folder: Path) -> Path:
    """A 1-layer RoBERTa with a byte-level BPE tokenizer trained here (offline, a second)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast, RobertaConfig, RobertaModel

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<s>", "<pad>", "</s>", "<unk>", "<mask>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    tok.train_from_iterator(["the cat sat on the mat " * 50, "paris is the capital\n\t"], trainer)
    tok.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0))
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", sep_token="</s>",
        cls_token="<s>", unk_token="<unk>", pad_token="<pad>", mask_token="<mask>",
        model_max_length=512,
    )  # fmt: skip
    fast.save_pretrained(folder)
    torch.manual_seed(0)
    config = RobertaConfig(
        vocab_size=len(fast), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=514, pad_token_id=1,
    )  # fmt: skip
    RobertaModel(config).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def bpe_backbone(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("tokenizers")
    return _bpe_roberta(tmp_path_factory.mktemp("bpe") / "backbone")


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
