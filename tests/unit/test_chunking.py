"""Token-aware chunking, and chunking as an engine option: split on add, grouped on search,
whole documents on delete, the same through every constructor."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers import AutoTokenizer

from colmax import Engine
from colmax.chunking import (
    Chunker,
    chunker_for,
    collapse_hits,
    delete_documents,
    existing_chunk_ids,
    search_parents,
    upsert_documents,
)
from colmax.chunking.splitter import _windows
from colmax.errors import DuplicateIdError, InvalidInputError, UnknownIdError
from colmax.limits import MAX_ID_LENGTH
from colmax.store.manifest import Manifest
from colmax.types import Hit


@pytest.fixture(scope="module")
def tokenizer(tiny_hf_model: Path):  # type: ignore[no-untyped-def]
    return AutoTokenizer.from_pretrained(str(tiny_hf_model))


@pytest.fixture()
def engine(tiny_colbert_model: Path, tmp_path: Path) -> Engine:
    return Engine.from_pretrained(tiny_colbert_model, device="cpu", path=tmp_path / "idx")


# ---------------------------------------------------------------- windows and spans


@given(
    word_start=st.lists(st.booleans(), min_size=1, max_size=200).map(lambda w: [True, *w[1:]]),
    size=st.integers(1, 40),
    data=st.data(),
)
@settings(max_examples=300, deadline=None)
def test_windows_cover_everything_in_order_within_size(
    word_start: list[bool], size: int, data: st.DataObject
) -> None:
    overlap = data.draw(st.integers(0, size - 1))
    windows = _windows(word_start, size, overlap)
    assert windows[0][0] == 0 and windows[-1][1] == len(word_start)
    for (a, b), (c, d) in zip(windows, windows[1:]):
        assert a < c <= b < d  # starts and ends strictly increase; no gap between windows
    assert all(0 < b - a <= size for a, b in windows)


def test_windows_overlap_exactly_when_every_token_starts_a_word() -> None:
    windows = _windows([True] * 10, 4, 2)
    assert windows == [(0, 4), (2, 6), (4, 8), (6, 10)]


def test_window_ends_move_back_to_a_word_start() -> None:
    # tokens 2-4 form one word: a cut at 4 would split it, so the first window ends at 2
    assert _windows([True, True, True, False, False, True, True, True], 4, 0) == [
        (0, 2),
        (2, 6),
        (6, 8),
    ]
    # a word longer than half a window is cut hard rather than making tiny windows
    assert _windows([True, False, False, False, False, False, True], 3, 0) == [
        (0, 3),
        (3, 6),
        (6, 7),
    ]


def test_overlap_starts_at_a_word_start() -> None:
    # two-token words: an overlap of one token grows to the whole word
    assert _windows([True, False] * 4, 4, 1) == [(0, 4), (2, 6), (4, 8)]


def test_whitespace_chunks_are_slices_of_the_text_with_metadata() -> None:
    text = "  alpha beta\ngamma delta epsilon  zeta eta theta "
    chunks = Chunker(3, 1).split("doc", text, {"lang": "en"})
    assert [c.id for c in chunks] == ["doc#0", "doc#1", "doc#2", "doc#3"]
    assert chunks[0].text == "alpha beta\ngamma"
    assert chunks[1].text.split() == ["gamma", "delta", "epsilon"]
    for n, c in enumerate(chunks):
        meta = c.metadata
        assert text[meta["char_start"] : meta["char_end"]] == c.text
        assert meta["parent_id"] == "doc" and meta["chunk_index"] == n and meta["lang"] == "en"
    assert chunks[-1].text.endswith("theta")


def test_blank_text_has_no_chunks_and_short_text_one() -> None:
    assert Chunker(5).split("a", " \n\t ") == []
    (only,) = Chunker(5).split("a", " one two ")
    assert (only.id, only.text) == ("a#0", "one two")


def test_tokenizer_chunks_respect_the_token_budget_and_keep_words_whole(tokenizer) -> None:  # type: ignore[no-untyped-def]
    words = ["searching", "engines", "the", "cat", "sat", "running", "documents", "paris"]
    text = " ".join(words[i % len(words)] for i in range(300))
    chunker = Chunker(16, 4, tokenizer)
    chunks = chunker.split("p", text)
    assert len(chunks) > 10
    for c in chunks:
        n_tokens = len(tokenizer(c.text, add_special_tokens=False)["input_ids"])
        assert n_tokens <= 16
        start, end = c.metadata["char_start"], c.metadata["char_end"]
        # cut on word boundaries: the characters around the chunk are spaces or the text's ends
        assert start == 0 or text[start - 1] == " "
        assert end == len(text) or text[end] == " "
    covered = set()
    for c in chunks:
        covered |= set(range(c.metadata["char_start"], c.metadata["char_end"]))
    assert all(i in covered for i, ch in enumerate(text) if ch != " ")


def test_tokenizer_offsets_survive_lowercasing_and_punctuation(tokenizer) -> None:  # type: ignore[no-untyped-def]
    text = "The Cat, the DOG; and PARIS!\nHello World."
    chunks = Chunker(4, 0, tokenizer).split("p", text)
    for c in chunks:
        assert text[c.metadata["char_start"] : c.metadata["char_end"]] == c.text
    assert "".join(c.text for c in chunks).replace(" ", "").replace("\n", "") == text.replace(
        " ", ""
    ).replace("\n", "")


@pytest.mark.parametrize(("size", "overlap"), [(0, 0), (-1, 0), (4, 4), (4, -1), (4, 9)])
def test_bad_chunk_settings_are_refused(size: int, overlap: int) -> None:
    with pytest.raises(InvalidInputError):
        Chunker(size, overlap)


def test_chunker_for_uses_the_encoder_tokenizer(engine: Engine) -> None:
    assert chunker_for(engine, None) is None
    chunker = chunker_for(engine, 8, 2)
    assert chunker is not None and chunker.tokenizer is engine.encoder.tokenizer  # type: ignore[union-attr]


# ---------------------------------------------------------------- collapsing


def _chunk(parent: str, n: int, score: float, rank: int, text: str = "t") -> Hit:
    return Hit(f"{parent}#{n}", score, text, {"parent_id": parent, "chunk_index": n}, rank)


def test_collapse_keeps_best_chunk_per_parent() -> None:
    hits = [
        _chunk("a", 2, 9.0, 0, "best a"),
        Hit("b", 8.5, "whole b", {"x": 1}, 1),
        _chunk("a", 0, 8.0, 2, "worse a"),
        _chunk("c", 0, 7.0, 3, "c"),
        # a parent_id of the user's own, not a chunk made by colmax: passes through
        Hit("d", 6.0, "d", {"parent_id": "a"}, 4),
    ]
    out = collapse_hits(hits)
    assert [(h.id, h.rank, h.text) for h in out] == [
        ("a", 0, "best a"),
        ("b", 1, "whole b"),
        ("c", 2, "c"),
        ("d", 3, "d"),
    ]
    assert out[0].metadata == {"parent_id": "a", "chunk_index": 2, "chunk_id": "a#2"}
    assert out[1].metadata == {"x": 1}
    assert [h.id for h in collapse_hits(hits, k=2)] == ["a", "b"]


def test_search_groups_chunks_until_k_distinct_parents(engine: Engine) -> None:
    many = [f"cat sat on the mat {i}" for i in range(12)]
    engine.add(
        [*many, "paris france capital", "dog house"],
        ids=[f"a#{i}" for i in range(12)] + ["b#0", "c"],
        metadatas=[{"parent_id": "a", "chunk_index": i} for i in range(12)]
        + [{"parent_id": "b", "chunk_index": 0}, {}],
    )
    hits = engine.search("cat sat on the mat", k=3)
    assert sorted(h.id for h in hits) == ["a", "b", "c"]
    everything = engine.search("cat sat on the mat", k=100, group_chunks=False)
    assert len(everything) == 14 and hits == collapse_hits(everything, k=3)
    batch = engine.search(["cat sat on the mat", "dog house"], k=2)
    assert batch[0] == collapse_hits(everything, k=2)
    assert len(batch[1]) == 2


# ---------------------------------------------------------------- the engine option


@pytest.fixture()
def chunked(tiny_colbert_model: Path, tmp_path: Path) -> Engine:
    return Engine.from_pretrained(
        tiny_colbert_model, device="cpu", path=tmp_path / "chunked", chunk_tokens=3
    )


LONG = "one two three four five six seven eight nine ten"


def test_chunking_is_recorded_and_every_constructor_chunks_the_same(
    chunked: Engine, tiny_colbert_model: Path
) -> None:
    written = chunked.add([LONG, "q text"], ids=["p", "q"], metadatas=[{"v": 1}, None])
    assert written == ["p", "q"] and written.entries == 5  # 4 chunks of p, 1 of q
    assert sorted(chunked.ids()) == ["p#0", "p#1", "p#2", "p#3", "q#0"]
    chunk = chunked.get(["p#1"])[0]
    meta = chunk.metadata
    assert meta["v"] == 1 and meta["parent_id"] == "p" and meta["chunk_index"] == 1
    assert LONG[meta["char_start"] : meta["char_end"]] == chunk.text
    assert chunked.info().chunking == {"tokens": 3, "overlap": 0}
    folder = chunked.path
    assert folder is not None and Manifest.read(folder).chunking == {"tokens": 3, "overlap": 0}
    chunked.close()
    for again in (Engine.load(folder), Engine(path=folder)):  # no chunk_tokens given
        assert again.chunker is not None and again.chunker.max_tokens == 3
        again.close()
    reopened = Engine.load(folder, device="cpu")
    reopened.add(["new words here and more"], ids=["r"])
    assert sorted(i for i in reopened.ids() if i.startswith("r")) == ["r#0", "r#1"]
    hits = reopened.search("five six seven", k=3)
    assert len({h.id for h in hits}) == len(hits) and "p" in [h.id for h in hits]
    assert all("#" not in h.id for h in hits)
    reopened.close()


def test_add_replaces_every_piece_of_the_previous_version(chunked: Engine) -> None:
    chunked.add([LONG, "q text"], ids=["p", "q"], metadatas=[{"v": 1}, None])
    assert existing_chunk_ids(chunked, "p") == ["p#0", "p#1", "p#2", "p#3"]
    chunked.add(["short now"], ids=["p"], metadatas=[{"v": 2}])
    assert existing_chunk_ids(chunked, "p") == ["p#0"]
    assert chunked.get(["p#0"])[0].metadata["v"] == 2
    # stored whole (chunking off), then chunked again: each write removes the other form
    chunked.set_chunking(None)
    chunked.add(["whole"], ids=["p"])
    assert existing_chunk_ids(chunked, "p") == [] and "p" in chunked
    chunked.set_chunking(3)
    chunked.add([LONG], ids=["p"])
    assert "p" not in chunked and len(existing_chunk_ids(chunked, "p")) == 4
    assert sorted(chunked.ids()) == ["p#0", "p#1", "p#2", "p#3", "q#0"]


def test_a_document_merely_named_like_a_chunk_is_not_one(engine: Engine) -> None:
    engine.add(["x"], ids=["r#0"])
    assert existing_chunk_ids(engine, "r") == []
    with pytest.raises(UnknownIdError):
        engine.delete(["r"])


@pytest.mark.parametrize("overlap", [0, 2])
def test_get_by_a_chunked_documents_id_gives_the_document(
    tiny_colbert_model: Path, tmp_path: Path, overlap: int
) -> None:
    """Searches name a chunked document by its own id; get() by that id used to raise
    UnknownIdError (its entries are "<id>#<n>")."""
    engine = Engine.from_pretrained(
        tiny_colbert_model, path=tmp_path / "idx", chunk_tokens=3, chunk_overlap=overlap
    )
    lines = "one two three\nfour five six\n\nseven eight nine"
    engine.add([LONG, lines], ids=["p", "n"], metadatas=[{"v": 1}, None])
    engine.set_chunking(None)
    engine.add(["plain"], ids=["w"])
    docs = engine.get(["w", "p", "n", "p"])
    assert [(d.id, d.metadata) for d in docs] == [
        ("w", {}),
        ("p", {"v": 1}),
        ("n", {}),
        ("p", {"v": 1}),
    ]
    assert [docs[0].text, docs[1].text, docs[3].text] == ["plain", LONG, LONG]
    # Whitespace between two chunks is not stored: it comes back as as many spaces.
    assert docs[2].text.split() == lines.split() and len(docs[2].text) == len(lines)
    assert engine.get(["p#1"])[0].metadata["chunk_index"] == 1  # a chunk by its own id
    with pytest.raises(UnknownIdError, match="nope"):
        engine.get(["p", "nope"])
    assert [d.id for d in engine.get(["nope", "p"], missing="skip")] == ["p"]


def test_rerank_by_a_chunked_documents_id_scores_its_best_chunk(chunked: Engine) -> None:
    """rerank(ids=...) with the ids a search returns (parents) used to raise UnknownIdError;
    now each scores as in the search: its best chunk, named by the parent."""
    chunked.add([LONG, "rain falls on the plain", "dry sunny weather"], ids=["p", "r", "d"])
    chunked.set_chunking(None)
    chunked.add(["rain and more rain"], ids=["w"])
    query = "rain on the plain"
    found = {h.id: h for h in chunked.search(query, k=10)}
    for explain in (False, True):
        hits = chunked.rerank(query, ids=["d", "w", "r", "p"], explain=explain)
        assert sorted(h.id for h in hits) == ["d", "p", "r", "w"]
        assert [h.rank for h in hits] == [0, 1, 2, 3]
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
        for hit in hits:
            assert hit.position == ["d", "w", "r", "p"].index(hit.id)
            assert hit.score == pytest.approx(found[hit.id].score, abs=1e-5)
            assert hit.text == found[hit.id].text
            assert hit.metadata.get("chunk_id") == found[hit.id].metadata.get("chunk_id")
            assert (hit.explanation is not None) == explain
            if explain:
                assert hit.explanation.score == pytest.approx(hit.score, abs=5e-3)
    assert chunked.rerank(query, ids=["p", "w"], k=1)[0].id in {"p", "w"}
    # explain() by the parent's id explains its best chunk (it raised UnknownIdError).
    best = found["r"].metadata["chunk_id"]
    by_parent = chunked.explain(query, "r")
    assert by_parent.score == pytest.approx(found["r"].score, abs=5e-3)
    assert by_parent == chunked.explain(query, best)
    with pytest.raises(UnknownIdError):
        chunked.explain(query, "nope")
    with pytest.raises(UnknownIdError, match="nope"):
        chunked.rerank(query, ids=["p", "nope"])


def test_a_chunk_never_replaces_a_document_of_its_own(engine: Engine) -> None:
    """A document stored whole as "report#1", then "report" added with chunking on: its
    chunk 1 would have overwritten that unrelated document (and deleting "report" would
    have taken it too)."""
    engine.add(["the dog ran to the house"], ids=["report#1"], metadatas=[{"author": "bob"}])
    engine.set_chunking(3)
    with pytest.raises(DuplicateIdError, match=r"'report#1' is stored as a document of its own"):
        engine.add([LONG], ids=["report"])
    assert engine.ids() == ["report#1"]
    assert engine.get(["report#1"])[0].metadata == {"author": "bob"}
    # A short "report" (one chunk, "report#0") touches nothing of the other document.
    engine.add(["short"], ids=["report"])
    assert sorted(engine.ids()) == ["report#0", "report#1"]
    assert engine.delete(["report"]) == 1 and engine.ids() == ["report#1"]


def test_a_document_never_replaces_another_documents_chunk(chunked: Engine) -> None:
    chunked.add([LONG], ids=["p"])
    chunked.set_chunking(None)
    before = chunked.get(["p#1"])[0]
    with pytest.raises(DuplicateIdError, match=r"'p#1' is chunk 1 of the stored document 'p'"):
        chunked.add(["unrelated"], ids=["p#1"])
    with pytest.raises(DuplicateIdError, match="chunk 1"):  # precomputed vectors: same check
        chunked.add(embeddings=[chunked.encoder.encode_documents(["x"])[0]], ids=["p#1"])
    assert chunked.get(["p#1"])[0] == before
    # Re-adding the chunk itself (as exported, with its chunk metadata) is an update.
    chunked.add([before.text], ids=["p#1"], metadatas=[before.metadata])
    assert len(chunked) == 4


def test_chunk_ids_stay_within_the_id_length_limit(chunked: Engine) -> None:
    longest = "x" * (MAX_ID_LENGTH - 2)  # "#0" fits, "#1" too: 1024 characters
    chunked.add(["one two three four"], ids=[longest])
    with pytest.raises(InvalidInputError, match="longer than 1024 characters"):
        chunked.add([LONG], ids=["y" * (MAX_ID_LENGTH - 1)])
    assert all(len(i) <= MAX_ID_LENGTH for i in chunked.ids())
    assert chunked.delete([longest]) == 2 and len(chunked) == 0


def test_delete_takes_parents_and_is_all_or_nothing(chunked: Engine) -> None:
    chunked.add(["a b c d e f g h i j k l", "whole"], ids=["p", "w"])
    chunked.set_chunking(None)
    chunked.add(["plain"], ids=["plain"])
    before = sorted(chunked.ids())
    with pytest.raises(UnknownIdError, match="nope"):
        chunked.delete(["p", "nope"])
    assert sorted(chunked.ids()) == before
    assert chunked.delete(["p", "plain"]) == 5  # 4 chunks + 1 plain document
    assert chunked.ids() == ["w#0"]
    assert chunked.delete(["w", "gone"], missing="skip") == 1 and len(chunked) == 0


def test_delete_by_filter_takes_whole_chunked_documents(chunked: Engine) -> None:
    chunked.add([LONG, "q text", "r text"], ids=["p", "q", "r"], metadatas=[{"y": 1}, {"y": 2}, {}])
    assert chunked.delete(filter={"y": {"$gte": 1}}) == 5
    assert chunked.ids() == ["r#0"]
    assert chunked.delete(filter={"y": 9}) == 0
    with pytest.raises(InvalidInputError, match="every document"):
        chunked.delete(filter={})
    with pytest.raises(InvalidInputError, match="not both"):
        chunked.delete(["r"], filter={"y": 1})


def test_bad_chunking_fails_before_a_folder_is_made(
    tiny_colbert_model: Path, tmp_path: Path
) -> None:
    with pytest.raises(InvalidInputError, match="chunk"):
        Engine.from_pretrained(
            tiny_colbert_model, path=tmp_path / "x", chunk_tokens=4, chunk_overlap=4
        )
    assert not (tmp_path / "x").exists()


def test_the_deprecated_helpers_still_work(engine: Engine) -> None:
    with pytest.warns(DeprecationWarning, match="engine.add"):
        written = upsert_documents(engine, ["p"], [LONG], None, chunker=Chunker(3))
    assert written == ["p#0", "p#1", "p#2", "p#3"]
    with pytest.warns(DeprecationWarning, match="group"):
        hits = search_parents(engine, "five six", k=1)
    assert [h.id for h in hits] == ["p"]  # type: ignore[union-attr]
    with pytest.warns(DeprecationWarning, match="delete"):
        assert delete_documents(engine, ["p"]) == 4
