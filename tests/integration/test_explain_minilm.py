"""Explanations on real model output: MiniLM (all-MiniLM-L6-v2) over Cranfield documents."""

from __future__ import annotations

import unicodedata
from pathlib import Path

import pytest

from colmax import Engine
from colmax.beir import load_beir
from colmax.encoders import ColBERTEncoder, load_encoder
from colmax.explain import explain
from colmax.scoring import maxsim_ragged

QUERY = "what similarity laws must be obeyed when constructing aeroelastic models of heated high speed aircraft?"


@pytest.fixture(scope="module")
def encoder(minilm_path: Path) -> ColBERTEncoder:
    return load_encoder(minilm_path, device="cpu")


@pytest.fixture(scope="module")
def documents(cranfield_dir: Path) -> dict[str, str]:
    corpus = load_beir(cranfield_dir).corpus
    return {i: corpus[i] for i in ["12", "13", "184", "29", "51", "486"]}


def _plain(text: str) -> str:
    # BERT uncased: lowercase, then drop combining accents (what the tokenizer normalises).
    return "".join(
        c for c in unicodedata.normalize("NFD", text.lower()) if not unicodedata.combining(c)
    )


def _pieces(encoder: ColBERTEncoder, text: str, *, is_query: bool) -> list[str]:
    prepared = encoder.plan.prepare([text], is_query=is_query)[0]
    ids = [prepared.input_ids[p] for p in prepared.keep]
    return [str(t) for t in encoder.tokenizer.convert_ids_to_tokens(ids)]


def test_offsets_match_the_wordpieces_of_real_documents(
    encoder: ColBERTEncoder, documents: dict[str, str]
) -> None:
    texts = [*documents.values(), "  Café Ångström: naïve résumé, 3.5 m/s—fast!  "]
    for text in texts:
        e = explain(encoder, QUERY, text)
        pieces = _pieces(encoder, text, is_query=False)
        assert len(pieces) == encoder.encode_documents([text])[0].shape[0]
        spanned = [m for m in e.matches if m.doc_span is not None]
        assert spanned, text
        for m in e.matches:
            if m.doc_span is None:
                assert pieces[m.doc_position] in ("[CLS]", "[SEP]")
                continue
            start, end = m.doc_span
            assert text[start:end] == m.doc_token
            assert _plain(m.doc_token) == pieces[m.doc_position].removeprefix("##")
        q_pieces = _pieces(encoder, QUERY, is_query=True)
        for m in e.matches:
            if m.query_span is not None:
                q = QUERY[m.query_span[0] : m.query_span[1]]
                assert q == m.query_token
                assert _plain(q) == q_pieces[m.query_position].removeprefix("##")


def test_scores_add_up_and_agree_with_the_engine(
    encoder: ColBERTEncoder, documents: dict[str, str]
) -> None:
    engine = Engine(encoder)
    engine.add(list(documents.values()), ids=list(documents))
    hits = engine.search(QUERY, k=len(documents))
    qv = encoder.encode_queries([QUERY])[0]
    for hit in hits:
        dv = encoder.encode_documents([hit.text])[0]
        e = explain(encoder, QUERY, hit.text, query_vectors=qv, document_vectors=dv)
        assert e.score == pytest.approx(float(maxsim_ragged([qv], [dv])[0, 0]), abs=1e-4)
        assert sum(m.similarity for m in e.matches) == pytest.approx(e.score, abs=1e-4)
        # The engine scores float16 copies of the same vectors: equal to within float16 rounding.
        assert e.score == pytest.approx(hit.score, abs=2e-2)
    best = explain(encoder, QUERY, hits[0].text)
    worst = explain(encoder, QUERY, hits[-1].text)
    assert best.score > worst.score


def test_best_passage_of_a_relevant_document_quotes_it(
    encoder: ColBERTEncoder, documents: dict[str, str]
) -> None:
    text = documents["12"]  # judged relevant to query 1 in Cranfield
    e = explain(encoder, QUERY, text, passage_tokens=24, max_passages=2)
    assert e.passages
    best = e.passages[0]
    assert text[best.start : best.end] == best.text
    words = {_plain(w) for w in best.text.split()}
    assert words & {"aeroelastic", "heated", "models", "similarity", "high", "speed"}
    assert "<mark" in e.to_html() and "\x1b[1;33m" in e.to_terminal()
