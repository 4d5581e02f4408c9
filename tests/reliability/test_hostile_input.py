"""Hostile arguments to the public API: every call either does exactly what the documentation
says or raises a ``ColmaxError`` and changes nothing (documents, vectors, files on disk).

Acceptance is checked against the documented rule, not just "no crash": an id is accepted iff it
is a 1..1024-character str without NUL that UTF-8 can encode, and so on. Accepted values must
round-trip exactly (also after reopening the folder).
"""

from __future__ import annotations

import json
import math
import resource
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import example, given
from hypothesis import strategies as st
from rel_helpers import (
    DIM,
    REL_SETTINGS,
    engine_fingerprint,
    fingerprint,
    json_roundtrip,
    maxsim,
    raw_vectors,
    rel_settings,
    scaled,
    stored,
)

from colmax import Engine
from colmax.errors import ColmaxError
from colmax.validation import MAX_ID_LENGTH, MAX_METADATA_DEPTH

REFUSED = object()

# Characters that break naive code: NUL, controls, quotes, path and SQL syntax, a lone
# surrogate (not encodable in UTF-8), right-to-left override, emoji, combining marks.
NASTY_CHARS = st.sampled_from(
    ["\x00", "\x01", "\x1f", "\x7f", "\n", "\r", "\t", "'", '"', "\\", "/", "..", "%", "_",
     ";", "--", "\ud800", "\udfff", "\u202e", "\ufeff", "🙂", "e\u0301", "日本", "$", "."]
)  # fmt: skip
nasty_text = st.lists(st.one_of(NASTY_CHARS, st.text(max_size=3)), max_size=6).map("".join)
non_strings = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.binary(max_size=4),
    st.lists(st.text(max_size=2), max_size=2),
    st.just(object()),
)


def encodable(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


class Guard:
    """Runs one call; if it raises, the error must be a ColmaxError and nothing may change."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def __call__(self, call: Callable[[], Any]) -> Any:
        before = engine_fingerprint(self.engine)
        files = fingerprint(self.engine.path) if self.engine.path else None
        try:
            return call()
        except ColmaxError:
            pass
        assert engine_fingerprint(self.engine) == before, "a refused call changed the index"
        if files is not None:
            assert self.engine.path is not None
            assert fingerprint(self.engine.path) == files, "a refused call left files behind"
        return REFUSED


@pytest.fixture
def engine(fast_dir: Path) -> Iterator[Engine]:
    with Engine(dim=DIM, path=fast_dir / "idx") as eng:
        eng.add(
            ["first", "second"],
            ids=["a", "b"],
            metadatas=[{"g": 1}, {"g": 2}],
            embeddings=[raw_vectors(1, 3), raw_vectors(2, 2)],
        )
        yield eng


_DEFAULT = object()


def _add_one(
    engine: Engine, id_: Any = "x", text: Any = "t", meta: Any = None, emb: Any = _DEFAULT
) -> Any:
    emb = raw_vectors(3, 2) if emb is _DEFAULT else emb
    return engine.add([text], ids=[id_], metadatas=[meta], embeddings=[emb])


def _undo(engine: Engine, id_: str) -> None:
    engine.delete([id_])
    assert engine.ids() == ["a", "b"]


# ---------------------------------------------------------------------------- ids
def valid_id(id_: Any) -> bool:
    return (
        isinstance(id_, str)
        and 0 < len(id_) <= MAX_ID_LENGTH
        and "\x00" not in id_
        and encodable(id_)
    )


@REL_SETTINGS
@given(id_=st.one_of(nasty_text, non_strings, st.text()))
@example(id_="")
@example(id_="../x")
@example(id_="../../etc/passwd")
@example(id_="\x00")
@example(id_="x" * (MAX_ID_LENGTH + 1))
@example(id_="é" * MAX_ID_LENGTH)
@example(id_="\ud800")
@example(id_="a'); DROP TABLE documents; --")
def test_add_with_hostile_ids(engine: Engine, id_: Any) -> None:
    out = Guard(engine)(lambda: _add_one(engine, id_=id_))
    assert (out is not REFUSED) == valid_id(id_), f"id {id_!r}: accepted={out is not REFUSED}"
    if out is not REFUSED:
        assert out == [id_] and id_ in engine and engine.get([id_])[0].id == id_
        assert engine.ids() == ["a", "b", id_]
        _undo(engine, id_)


hashable_non_strings = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(), st.binary(max_size=4)
)


@REL_SETTINGS
@given(
    ids=st.one_of(non_strings, st.lists(st.one_of(nasty_text, hashable_non_strings), max_size=3))
)
@example(ids="a")
@example(ids=["\ud800"])
@example(ids=[None])
@example(ids=["a", "a"])
def test_delete_and_get_with_hostile_ids(engine: Engine, ids: Any) -> None:
    """``get`` succeeds iff every id is stored; ``delete`` iff they are also distinct."""
    guard = Guard(engine)
    stored_ids = isinstance(ids, list) and all(isinstance(i, str) and i in ("a", "b") for i in ids)
    got = guard(lambda: engine.get(ids))
    assert (got is not REFUSED) == stored_ids, repr(ids)
    for value in (ids, *(ids if isinstance(ids, list) else [])):
        try:
            contained = value in engine
        except TypeError:  # unhashable values, as for any Python container
            continue
        assert contained == (value in ("a", "b"))
    deleted = guard(lambda: engine.delete(ids))
    assert (deleted is not REFUSED) == (stored_ids and len(set(ids)) == len(ids)), repr(ids)


def test_delete_with_an_unhashable_id_is_refused_cleanly(engine: Engine) -> None:
    assert Guard(engine)(lambda: engine.delete([["a"]])) is REFUSED


# ---------------------------------------------------------------------------- texts
@REL_SETTINGS
@given(text=st.one_of(nasty_text, non_strings, st.text()))
@example(text="")
@example(text="x" * 1_000_000)
def test_add_payload_texts_with_embeddings(engine: Engine, text: Any) -> None:
    """With embeddings, any encodable str (even empty) is stored as-is; nothing else is."""
    out = Guard(engine)(lambda: _add_one(engine, text=text))
    assert (out is not REFUSED) == (isinstance(text, str) and encodable(text)), repr(text)[:80]
    if out is not REFUSED:
        assert engine.get(["x"])[0].text == text
        _undo(engine, "x")


@pytest.fixture
def text_engine(tiny_model_dir: Path, fast_dir: Path) -> Iterator[Engine]:
    with Engine.from_pretrained(tiny_model_dir, path=fast_dir / "text", device="cpu") as eng:
        eng.add(["the cat sat on the mat", "a dog ran in the house"], ids=["a", "b"])
        yield eng


@rel_settings(max_examples=scaled(20))
@given(text=st.one_of(nasty_text, non_strings))
@example(text="the cat " * 50_000)
@example(text=" \t\n\x0b")
@example(text="\ud800 cat")
def test_texts_through_the_encoder(text_engine: Engine, text: Any) -> None:
    """Encoded texts: refused iff not a non-blank encodable str; otherwise stored exactly and
    searchable. A 400,000-character text costs no more than the model's length limit."""
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    guard = Guard(text_engine)
    out = guard(lambda: text_engine.add([text], ids=["x"]))
    valid = isinstance(text, str) and encodable(text) and bool(text.strip())
    assert (out is not REFUSED) == valid, repr(text)[:80]
    hits = guard(lambda: text_engine.search(text, k=3))
    several = isinstance(text, list) and bool(text) and all(s.strip() for s in text)
    assert (hits is not REFUSED) == (valid or several)  # a list of queries is a batch
    if valid:
        assert text_engine.get(["x"])[0].text == text
        assert "x" in [h.id for h in hits]  # type: ignore[union-attr]
        text_engine.delete(["x"])
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss) / 1024
    assert grown_mb < 300, f"peak memory grew by {grown_mb:.0f} MB"


# ---------------------------------------------------------------------------- metadata
def _depth(value: Any) -> int:
    """Levels of nested dicts/lists: ``{"a": 1}`` is 1, ``{"a": [1]}`` is 2."""
    depth, level = 0, [value]
    while level:
        level = [x for x in level if isinstance(x, (dict, list, tuple))]
        depth += bool(level)
        level = [v for x in level for v in (x.values() if isinstance(x, dict) else x)]
    return depth


def valid_metadata(meta: Any) -> bool:
    if meta is None:
        return True
    if not isinstance(meta, dict) or not all(isinstance(k, str) for k in meta):
        return False
    try:
        text = json.dumps(meta, allow_nan=False, ensure_ascii=False)
    except (TypeError, ValueError, RecursionError):
        return False
    return (
        encodable(text)
        and _depth(meta) <= MAX_METADATA_DEPTH
        and not _has_nul(meta)
        and _string_keys(meta)  # json.dumps would turn a nested 1 into "1"
    )


def _string_keys(value: Any) -> bool:
    if isinstance(value, dict):
        return all(isinstance(k, str) and _string_keys(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return all(_string_keys(v) for v in value)
    return True


def _has_nul(value: Any) -> bool:
    if isinstance(value, str):
        return "\x00" in value
    if isinstance(value, dict):
        return any(_has_nul(k) or _has_nul(v) for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return any(_has_nul(v) for v in value)
    return False


json_scalars = st.one_of(
    st.none(), st.booleans(), st.integers(-(2**70), 2**70), st.floats(), nasty_text,
    st.binary(max_size=2), st.just({1, 2}), st.just(object()),
)  # fmt: skip
metadata_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.tuples(inner),
        st.dictionaries(st.one_of(nasty_text, st.integers()), inner, max_size=3),
    ),
    max_leaves=8,
)


def _nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return {"deep": value}


@REL_SETTINGS
@given(meta=st.one_of(st.dictionaries(nasty_text, metadata_values, max_size=4), non_strings))
@example(meta=_nested(MAX_METADATA_DEPTH - 1))
@example(meta=_nested(MAX_METADATA_DEPTH))
@example(meta=_nested(5_000))
@example(meta={"x": float("nan")})
@example(meta={"x": 10**400})
@example(meta={"\ud800": 1})
@example(meta={'a"b': 1, "c\\d": [1, {"e": None}]})
@example(meta={"a": ["x\x00y"]})
@example(meta={"a\x00": 1})
@example(meta={"m": {1: "int key", "1": "str key"}})  # was stored as {"m": {"1": "str key"}}
@example(meta={"m": [{None: 1}]})
def test_add_with_hostile_metadata(engine: Engine, meta: Any) -> None:
    out = Guard(engine)(lambda: _add_one(engine, meta=meta))
    assert (out is not REFUSED) == valid_metadata(meta), repr(meta)[:120]
    if out is not REFUSED:
        assert engine.get(["x"])[0].metadata == json_roundtrip(meta or {})
        # One document's metadata must never break filtered search over the others.
        hits = engine.search(query_embeddings=raw_vectors(4, 2), k=5, filter={"g": 2})
        assert [h.id for h in hits] == ["b"]
        _undo(engine, "x")


# ---------------------------------------------------------------------------- embeddings
def valid_embedding(emb: Any) -> bool:
    if isinstance(emb, torch.Tensor):
        if emb.is_complex() or emb.dtype == torch.bool or emb.device.type == "meta":
            return False
        emb = emb.detach().to(torch.float64).numpy()
    if not isinstance(emb, np.ndarray) or emb.dtype.kind not in "fiu":
        return False
    if emb.ndim != 2 or emb.shape[0] == 0 or emb.shape[1] != DIM:
        return False
    # The documented rule: refused only for a non-finite value or a row that is exactly zero;
    # the magnitude does not matter (subnormal and near-overflow rows have a direction too).
    arr = emb.astype(np.float64)
    return bool(np.isfinite(arr).all() and (arr != 0).any(axis=1).all())


def _full(n: int, d: int, fill: float, dtype: Any) -> np.ndarray:
    with np.errstate(all="ignore"):  # NaN to int, 1e38 to float16: hostile on purpose
        return np.full((n, d), fill).astype(dtype)


special_floats = st.sampled_from([0.0, -0.0, 1.0, -1.0, np.nan, np.inf, -np.inf, 1e-45, 1e38, 6e4])
embeddings = st.one_of(
    st.builds(
        _full,
        st.integers(0, 3),
        st.sampled_from([DIM, DIM - 1, DIM + 1, 0]),
        special_floats,
        st.sampled_from(
            [np.float16, np.float32, np.float64, np.int8, np.uint8, np.bool_, np.complex64]
        ),
    ),
    st.builds(
        lambda seed, bad: raw_vectors(seed, 3).astype(object) if bad else raw_vectors(seed, 3),
        st.integers(0, 9),
        st.booleans(),
    ),
    st.sampled_from(
        [None, "vec", [[1.0] * DIM], np.ones(DIM), np.ones((1, 2, DIM)), np.array([["a"] * DIM])]
    ),
    st.builds(lambda s: torch.from_numpy(raw_vectors(s, 2)).to(torch.bfloat16), st.integers(0, 9)),
    st.just(torch.ones(2, DIM, device="meta")),
    st.just(torch.ones(2, DIM, dtype=torch.complex64)),
)


@REL_SETTINGS
@given(emb=embeddings)
# Subnormal and tiny values: on e83c1de float32 1e-45 rows were refused as "all-zero (or
# overflowing)", and float64 1e-45 rows were stored while the reference overflowed (a CI flake).
@example(emb=np.full((2, DIM), 1e-45))
@example(emb=np.full((2, DIM), 1e-45, dtype=np.float32))
@example(emb=np.full((2, DIM), 5e-324))
@example(emb=np.full((2, DIM), 1e-22, dtype=np.float32))
@example(emb=np.full((2, DIM), 1e300))
@example(emb=torch.full((2, DIM), 1e-310, dtype=torch.float64))
def test_add_with_hostile_embeddings(engine: Engine, emb: Any) -> None:
    out = Guard(engine)(lambda: _add_one(engine, emb=emb))
    assert (out is not REFUSED) == valid_embedding(emb), repr(emb)[:120]
    if out is not REFUSED:
        vectors = emb.detach().double().numpy() if isinstance(emb, torch.Tensor) else emb
        query = raw_vectors(5, 2)
        hit = engine.rerank(None, ids=["x"], query_embedding=query)[0]
        assert math.isclose(
            hit.score, maxsim(query, stored(vectors.astype(np.float64))), abs_tol=2e-2
        )
        _undo(engine, "x")


@REL_SETTINGS
@given(query=embeddings, k=st.one_of(st.integers(-3, 10**12), non_strings, st.just(np.int64(3))))
def test_search_with_hostile_queries(engine: Engine, query: Any, k: Any) -> None:
    hits = Guard(engine)(lambda: engine.search(query_embeddings=query, k=k))
    valid_k = isinstance(k, (int, np.integer)) and not isinstance(k, bool) and k > 0
    assert (hits is not REFUSED) == (valid_embedding(query) and valid_k), (repr(query)[:80], k)
    if hits is not REFUSED:
        assert len(hits) == min(int(k), 2) and all(math.isfinite(h.score) for h in hits)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
@pytest.mark.parametrize("magnitude", [1e-45, 1e-30, 1e-22, 1e-7, 1.0, 6e4, 1e38, 1e300])
def test_every_accepted_vector_is_stored_with_unit_norm(
    engine: Engine, dtype: Any, magnitude: float
) -> None:
    """Whatever the scale, an accepted row is stored as its direction: norm 1 (float16
    rounding aside). On e83c1de float32 rows near 1e-22 were stored with norm 1.006."""
    row = np.array([magnitude * (i + 1) for i in range(DIM)], dtype=np.float64)
    with np.errstate(all="ignore"):  # overflowing to infinity is one of the cases
        emb = np.stack([np.full(DIM, magnitude), -row[::-1]]).astype(dtype)
        representable = bool(np.isfinite(emb).all() and (emb != 0).any(axis=1).all())
    out = Guard(engine)(lambda: _add_one(engine, emb=emb))
    assert (out is not REFUSED) == representable, (dtype, magnitude)
    if out is REFUSED:
        return
    vectors = engine.backend.get_vectors(["x"])[0].astype(np.float64)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=2e-3)
    direction = emb.astype(np.float64) / np.abs(emb.astype(np.float64)).max()
    direction /= np.linalg.norm(direction, axis=1, keepdims=True)
    np.testing.assert_allclose(vectors, direction, atol=2e-3)
    _undo(engine, "x")


# ---------------------------------------------------------------------------- constructor
@pytest.mark.parametrize("dim", [0, -3, 10**9, 2**70, None])
def test_impossible_dimensions_are_refused_before_any_folder_exists(
    dim: Any, fast_dir: Path
) -> None:
    with pytest.raises(ColmaxError):
        Engine(dim=dim, path=fast_dir / "new")
    assert not (fast_dir / "new").exists()
    with pytest.raises(ColmaxError):
        Engine(dim=dim)


# ---------------------------------------------------------------------------- rerank
def test_rerank_candidates_are_bounded(fast_dir: Path) -> None:
    """Every candidate is encoded and padded together: on e83c1de 5,000 took 455 MB more
    memory at dim 16. More than colmax.limits.MAX_RERANK_CANDIDATES is refused before any
    work, by ids or by texts; at the limit it works."""
    from colmax import limits

    n = limits.MAX_RERANK_CANDIDATES
    with Engine(dim=DIM) as engine:
        ids = [f"d{i}" for i in range(n + 1)]
        engine.add(embeddings=[raw_vectors(i, 2) for i in range(n + 1)], ids=ids)
        query = raw_vectors(5, 2)
        with pytest.raises(ColmaxError, match=str(n)):
            engine.rerank(None, ids=ids, query_embedding=query)
        with pytest.raises(ColmaxError, match=str(n)):
            engine.rerank(None, ["text"] * (n + 1), query_embedding=query)
        assert len(engine.rerank(None, ids=ids[:n], query_embedding=query, k=3)) == 3
