"""Engine over real (tiny, random) encoders in each checkpoint format."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from colmax import Engine
from colmax.errors import EmptyTextError, EncoderMismatchError, InvalidInputError
from colmax.scoring.reference import maxsim_loop

TEXTS = [
    "the cat sat on the mat",
    "a dog barked at the mailman",
    "stocks fell sharply on monday",
    "rain is expected tomorrow afternoon",
    "the committee approved the budget",
]


@pytest.fixture(params=["tiny_hf_model", "tiny_colbert_model", "tiny_pylate_model"])
def model_dir(request: pytest.FixtureRequest) -> Path:
    return request.getfixturevalue(request.param)


def test_search_equals_reference_over_encoder_output(model_dir: Path) -> None:
    engine = Engine.from_pretrained(model_dir, device="cpu")
    ids = engine.add(TEXTS, ids=[f"t{i}" for i in range(len(TEXTS))])
    assert ids == [f"t{i}" for i in range(len(TEXTS))] and len(engine) == len(TEXTS)
    query = "the cat and the dog"
    q = engine.encoder.encode_queries([query])[0].numpy()
    d = [
        v.numpy().astype(np.float16).astype(np.float32)
        for v in engine.encoder.encode_documents(TEXTS)
    ]
    ref = maxsim_loop([q], d)[0]
    hits = engine.search(query, k=5)
    assert [h.id for h in hits] == [f"t{i}" for i in np.argsort(-ref, kind="stable")]
    np.testing.assert_allclose([h.score for h in hits], np.sort(ref)[::-1], atol=2e-3)


def test_rerank_texts_and_ids_agree(model_dir: Path) -> None:
    engine = Engine.from_pretrained(model_dir, device="cpu")
    engine.add(TEXTS, ids=list("abcde"))
    by_text = engine.rerank("budget committee", TEXTS, k=3)
    by_id = engine.rerank("budget committee", ids=list("abcde"), k=3)
    assert [int(h.id) for h in by_text] == ["abcde".index(h.id) for h in by_id]
    assert by_text[0].text == by_id[0].text
    np.testing.assert_allclose([h.score for h in by_text], [h.score for h in by_id], atol=5e-3)
    assert engine.rerank("budget committee", []) == []
    with pytest.raises(EmptyTextError):
        engine.rerank("budget", ["fine", ""])
    with pytest.raises(InvalidInputError):
        engine.rerank("", TEXTS)


def test_empty_queries_and_query_lists_get_errors_that_fit(tiny_colbert_model: Path) -> None:
    """rerank() of a list of queries scored the first one only; an empty query was told to
    use Engine.add(..., skip_empty=True)."""
    engine = Engine.from_pretrained(tiny_colbert_model, device="cpu")
    engine.add(TEXTS, ids=list("abcde"))
    with pytest.raises(InvalidInputError, match="takes one query text, got list"):
        engine.rerank(["budget", "rain"], TEXTS)  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="takes one query text"):
        engine.rerank(("budget",), ids=["a"])  # type: ignore[arg-type]
    for call in (lambda: engine.search("  "), lambda: engine.rerank("", ids=["a"])):
        with pytest.raises(EmptyTextError, match="queries.0. is empty") as err:
            call()
        assert "skip_empty" not in str(err.value)
    with pytest.raises(EmptyTextError, match="skip_empty=True"):  # documents: the hint fits
        engine.add(["fine", " "], ids=["f", "g"])
    with pytest.raises(EmptyTextError) as err:  # rerank candidates: no skip_empty there
        engine.rerank("budget", ["fine", ""])
    assert "documents[1]" in str(err.value) and "skip_empty" not in str(err.value)


def test_rerank_works_without_any_index(tiny_colbert_model: Path) -> None:
    engine = Engine.from_pretrained(tiny_colbert_model, device="cpu")
    hits = engine.rerank("rain tomorrow", TEXTS)
    assert len(hits) == len(TEXTS) and len(engine) == 0
    assert [h.rank for h in hits] == list(range(len(TEXTS)))
    assert engine.rerank("rain tomorrow", []) == []


def test_load_restores_the_encoder(tmp_path: Path, tiny_pylate_model: Path) -> None:
    engine = Engine.from_pretrained(tiny_pylate_model, device="cpu", query_length=12)
    engine.add(TEXTS)
    before = engine.search("stocks on monday", k=3)
    engine.save(tmp_path / "idx")
    loaded = Engine.load(tmp_path / "idx", device="cpu")
    assert loaded.encoder is not None
    assert loaded.encoder.config() == engine.encoder.config()
    assert loaded.encoder.encode_queries(["x"])[0].shape[0] == 12
    after = loaded.search("stocks on monday", k=3)
    assert [h.id for h in after] == [h.id for h in before]
    np.testing.assert_allclose([h.score for h in after], [h.score for h in before], atol=1e-5)


def test_opening_with_another_model_is_refused(
    tmp_path: Path, tiny_pylate_model: Path, tiny_colbert_model: Path, tiny_hf_model: Path
) -> None:
    Engine.from_pretrained(tiny_pylate_model, path=tmp_path / "idx", device="cpu").add(TEXTS)
    with pytest.raises(EncoderMismatchError, match="dimension"):
        Engine.from_pretrained(tiny_hf_model, path=tmp_path / "idx", device="cpu")
    with pytest.raises(EncoderMismatchError, match="model"):
        Engine.from_pretrained(tiny_colbert_model, path=tmp_path / "idx", device="cpu")
    reopened = Engine.from_pretrained(tiny_pylate_model, path=tmp_path / "idx", device="cpu")
    assert len(reopened) == len(TEXTS)


def test_rerank_texts_with_ids_reuses_stored_vectors_only_when_text_matches(
    tiny_colbert_model: Path,
) -> None:
    engine = Engine.from_pretrained(tiny_colbert_model, device="cpu")
    engine.add(TEXTS[:3], ids=["a", "b", "c"])
    cands = [TEXTS[0], "the dog barked twice", TEXTS[2], TEXTS[4]]  # b's text changed; e unknown
    ids = ["a", "b", "c", "e"]
    calls: list[int] = []
    original = engine.encoder.encode_documents

    def counting(texts: list[str], **kwargs: object) -> list:
        calls.append(len(texts))
        return original(texts, **kwargs)

    engine.encoder.encode_documents = counting  # type: ignore[method-assign]  # count, don't replace
    mixed = engine.rerank("dog and cat", cands, ids=ids)
    assert calls == [2]  # only "b" (changed text) and "e" (not indexed) were encoded
    fresh = engine.rerank("dog and cat", cands)
    assert [h.id for h in mixed] == [ids[int(h.id)] for h in fresh]
    np.testing.assert_allclose([h.score for h in mixed], [h.score for h in fresh], atol=5e-3)
    assert {h.id: h.text for h in mixed}["b"] == "the dog barked twice"
