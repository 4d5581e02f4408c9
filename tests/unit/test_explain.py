"""colmax.explain on the tiny models: offsets, the score identity, passages, rendering, errors."""

from __future__ import annotations

import json
import string
from pathlib import Path

import numpy as np
import pytest
import torch

import colmax.explain
from colmax.encoders import ColBERTEncoder, load_encoder
from colmax.errors import (
    DimensionMismatchError,
    EmptyTextError,
    InvalidInputError,
    NoEncoderError,
)
from colmax.explain import Explanation, Passage, Token, explain, explain_vectors
from colmax.scoring import maxsim_ragged

FORMATS = ["tiny_colbert_model", "tiny_pylate_model", "tiny_hf_model"]
QUERY = "what is the capital of france?"
DOCS = [
    "paris is the capital of france, of course!",
    "  the big cat sat on the red mat; a dog ran.  ",  # leading/trailing whitespace
    "hello world. search engine. late interaction model. " * 8,  # long: passages matter
]


@pytest.fixture(params=FORMATS, scope="module")
def encoder(request: pytest.FixtureRequest) -> ColBERTEncoder:
    return load_encoder(request.getfixturevalue(request.param), device="cpu")


def test_public_api_is_pinned() -> None:
    assert sorted(colmax.explain.__all__) == sorted(
        ["Explanation", "Passage", "Span", "Token", "TokenMatch", "explain", "explain_vectors"]
    )


@pytest.mark.parametrize("doc", DOCS, ids=["short", "padded", "long"])
def test_spans_point_at_the_matched_tokens_in_the_text(encoder: ColBERTEncoder, doc: str) -> None:
    e = explain(encoder, QUERY, doc)
    pieces = _wordpieces(encoder, doc)
    assert len(pieces) == encoder.encode_documents([doc])[0].shape[0]
    for m in e.matches:
        if m.doc_span is None:
            assert pieces[m.doc_position].startswith("[")  # [CLS], [SEP], the marker
            continue
        start, end = m.doc_span
        assert doc[start:end] == m.doc_token
        # The span's text is exactly the word piece behind that vector row (a word the tiny
        # vocabulary lacks is one [UNK] piece spanning the whole word).
        piece = pieces[m.doc_position]
        if piece == "[UNK]":
            assert m.doc_token.isalpha()
        else:
            assert m.doc_token.lower() == piece.removeprefix("##")
    for m in e.matches:
        if m.query_span is not None:
            assert QUERY[m.query_span[0] : m.query_span[1]] == m.query_token


def test_skiplisted_punctuation_never_matches(tiny_colbert_model: Path) -> None:
    enc = load_encoder(tiny_colbert_model)
    doc = "paris, france; capital! the... cat?"
    e = explain(enc, "paris , ; ! ? . capital", doc)
    matched = {m.doc_token for m in e.matches if m.doc_span is not None}
    assert matched
    assert not matched & set(string.punctuation)


def test_query_expansion_rows_have_no_span(tiny_pylate_model: Path) -> None:
    enc = load_encoder(tiny_pylate_model)
    e = explain(enc, "the cat", DOCS[1])
    assert len(e.matches) == enc.settings.query_length
    masks = [m for m in e.matches if m.query_token == "[MASK]"]
    assert len(masks) == enc.settings.query_length - 5  # [CLS] [Q] the cat [SEP]
    assert all(m.query_span is None for m in masks)
    assert [m.query_token for m in e.matches[:5]][2:4] == ["the", "cat"]


@pytest.mark.parametrize("doc", DOCS, ids=["short", "padded", "long"])
def test_summed_similarities_equal_the_maxsim_score(encoder: ColBERTEncoder, doc: str) -> None:
    q = encoder.encode_queries([QUERY])[0]
    d = encoder.encode_documents([doc])[0]
    e = explain(encoder, QUERY, doc, query_vectors=q, document_vectors=d)
    expected = float(maxsim_ragged([q], [d])[0, 0])
    assert e.score == pytest.approx(expected, abs=1e-5)
    assert sum(m.similarity for m in e.matches) == pytest.approx(expected, abs=1e-5)
    # Each match is a true argmax (float64 brute force; ties allowed).
    sim = q.double() @ d.double().T
    for m in e.matches:
        assert sim[m.query_position, m.doc_position] == pytest.approx(
            float(sim[m.query_position].max()), abs=1e-6
        )


def test_explain_encodes_when_vectors_are_left_out(encoder: ColBERTEncoder) -> None:
    given = explain(
        encoder,
        QUERY,
        DOCS[0],
        query_vectors=encoder.encode_queries([QUERY])[0],
        document_vectors=encoder.encode_documents([DOCS[0]])[0],
    )
    assert explain(encoder, QUERY, DOCS[0]).score == pytest.approx(given.score, abs=1e-5)


def test_vectors_of_another_text_are_refused(encoder: ColBERTEncoder) -> None:
    other = encoder.encode_documents([DOCS[2]])[0]
    with pytest.raises(InvalidInputError, match="encode the text again"):
        explain(encoder, QUERY, DOCS[0], document_vectors=other)


def test_passages_cover_matches_and_do_not_overlap(encoder: ColBERTEncoder) -> None:
    doc = DOCS[2]
    e = explain(encoder, "late interaction search engine", doc, passage_tokens=6, max_passages=3)
    assert 1 <= len(e.passages) <= 3
    assert [p.score for p in e.passages] == sorted((p.score for p in e.passages), reverse=True)
    for p in e.passages:
        assert doc[p.start : p.end] == p.text
        assert p.text == p.text.strip() and p.text
        inside = [m for m in e.matches if m.doc_span and p.start <= m.doc_span[0] < p.end]
        assert sorted(m.query_position for m in inside) == list(p.query_positions)
        assert p.score == pytest.approx(sum(m.similarity for m in inside), abs=1e-5)
    spans = sorted((p.start, p.end) for p in e.passages)
    assert all(a[1] <= b[0] for a, b in zip(spans, spans[1:]))


def test_best_passage_is_where_the_matches_are() -> None:
    # Orthogonal toy vectors: query rows 0 and 1 match document rows 5 and 6 exactly.
    d = np.eye(8)
    q = d[[5, 6]]
    words = ["w0", "w1", "w2", "w3", "w4", "hit5", "hit6", "w7"]
    text = " ".join(words)
    tokens, pos = [], 0
    for w in words:
        tokens.append(Token(w, (pos, pos + len(w))))
        pos += len(w) + 1
    e = explain_vectors(q, d, document_tokens=tokens, document_text=text, passage_tokens=3)
    assert [m.doc_position for m in e.matches] == [5, 6]
    assert e.passages[0].text == "hit5 hit6"
    assert e.passages[0].score == pytest.approx(2.0)


def test_vectors_without_tokens_give_positions_only() -> None:
    rng = np.random.default_rng(0)
    q, d = rng.normal(size=(4, 8)), rng.normal(size=(20, 8))
    e = explain_vectors(q, d)
    assert len(e.matches) == 4
    assert all(m.doc_span is None and m.query_span is None for m in e.matches)
    assert e.passages == ()
    qn = q / np.linalg.norm(q, axis=1, keepdims=True)
    dn = d / np.linalg.norm(d, axis=1, keepdims=True)
    assert [m.doc_position for m in e.matches] == (qn @ dn.T).argmax(axis=1).tolist()
    assert e.score == pytest.approx(float((qn @ dn.T).max(axis=1).sum()), abs=1e-5)


def test_to_dict_is_json_and_round_trips_the_numbers(encoder: ColBERTEncoder) -> None:
    e = explain(encoder, QUERY, DOCS[0]).with_id("doc-1")
    data = json.loads(json.dumps(e.to_dict()))
    assert data["id"] == "doc-1"
    assert data["score"] == pytest.approx(e.score)
    assert len(data["matches"]) == len(e.matches)
    first = next(m for m in data["matches"] if m["doc_span"] is not None)
    start, end = first["doc_span"]
    assert DOCS[0][start:end] == first["doc_token"]
    assert data["passages"][0]["text"] == e.passages[0].text


def test_html_escapes_text_and_marks_matches() -> None:
    text = "<script>alert(1)</script> & cat"
    tokens = [Token("<script>", (0, 8)), Token("cat", (28, 31))]
    e = explain_vectors(
        np.eye(2)[:1], np.eye(2), document_tokens=tokens, document_text=text, query_text="q"
    )
    out = e.to_html()
    assert "<script>" not in out
    assert "&lt;script&gt;" in out and "&amp;" in out
    assert out.count("<mark") == 1
    assert e._repr_html_() == out


def test_terminal_rendering() -> None:
    text = "one two three four"
    tokens = [
        Token("one", (0, 3)),
        Token("two", (4, 7)),
        Token("three", (8, 13)),
        Token("four", (14, 18)),
    ]
    e = explain_vectors(
        np.eye(4)[[1, 2]], np.eye(4), document_tokens=tokens, document_text=text, passage_tokens=2
    )
    assert e.to_terminal(color=False) == "one »[two] [three]« four"
    colored = e.to_terminal()
    assert "\x1b[1;33mtwo\x1b[22;39m" in colored and "\x1b[4m" in colored
    assert e.to_terminal(color=False, width=9) == "...»[two] [three]«..."  # the passage


def test_bad_input_raises_clear_errors(encoder: ColBERTEncoder) -> None:
    with pytest.raises(EmptyTextError):
        explain(encoder, "  ", DOCS[0])
    with pytest.raises(NoEncoderError):
        explain(None, QUERY, DOCS[0])
    with pytest.raises(InvalidInputError, match="passage_tokens"):
        explain_vectors(np.eye(2), np.eye(2), passage_tokens=0)
    with pytest.raises(InvalidInputError, match="max_passages"):
        explain_vectors(np.eye(2), np.eye(2), max_passages=-1)
    with pytest.raises(DimensionMismatchError):
        explain_vectors(np.eye(2), np.eye(3))
    with pytest.raises(InvalidInputError, match="outside the text"):
        explain_vectors(np.eye(2), np.eye(2), document_tokens=[Token("a", (0, 9))] * 2)
    with pytest.raises(InvalidInputError, match="2 vectors but 1 tokens"):
        explain_vectors(np.eye(2), np.eye(2), document_tokens=[Token("a", None)])


def test_inputs_are_not_modified() -> None:
    q = torch.tensor([[3.0, 4.0]])
    d = np.array([[1.0, 0.0], [0.0, 2.0]])
    explain_vectors(q, d)
    assert q.tolist() == [[3.0, 4.0]] and d.tolist() == [[1.0, 0.0], [0.0, 2.0]]


def test_dataclasses_are_frozen() -> None:
    e = explain_vectors(np.eye(2), np.eye(2))
    assert isinstance(e, Explanation)
    with pytest.raises(AttributeError):
        e.score = 0.0  # type: ignore[misc]
    assert Passage(0, 1, "a", 1.0, (0,)).to_dict()["query_positions"] == [0]


def _wordpieces(encoder: ColBERTEncoder, text: str) -> list[str]:
    prepared = encoder.plan.prepare([text], is_query=False)[0]
    ids = [prepared.input_ids[p] for p in prepared.keep]
    return [str(t) for t in encoder.tokenizer.convert_ids_to_tokens(ids)]


def test_terminal_output_neutralises_escape_sequences() -> None:
    text = "evil \x1b[2J\x1b]0;title\x07 cat\nnext"
    tokens = [Token("evil", (0, 4)), Token("cat", (text.index("cat"), text.index("cat") + 3))]
    e = explain_vectors(np.eye(2)[1:], np.eye(2), document_tokens=tokens, document_text=text)
    out = e.to_terminal(color=False)
    assert "\x1b" not in out and "\x07" not in out
    assert "[cat]" in out and "\n" in out
