"""Model-based testing: random add / upsert / delete / save / load / search / get sequences
against a plain-Python model (id -> text, metadata, vectors).

After every step the ids (in order, oldest first) and the count must equal the model's; every
search must equal brute-force MaxSim over the model's (float16-rounded) vectors, with ties
allowed either way up to float tolerance and broken by age when the scores are identical;
saved copies and reopened folders must hold exactly the model. Vectors come from a handful of
seeds, so identical documents (exact score ties) are common.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    rule,
)
from rel_helpers import (
    DIM,
    Doc,
    Model,
    assert_engine_matches,
    maxsim,
    raw_vectors,
    rel_settings,
    scaled,
    scratch_dir,
)

from colmax import Engine
from colmax.errors import DuplicateIdError, UnknownIdError

IDS = ["a", "b", "c", "d", "e", "f", "ü/é", "../x", "id with spaces", "日本"]
id_strategy = st.sampled_from(IDS)
doc_strategy = st.builds(
    Doc,
    text=st.text(max_size=12),
    metadata=st.fixed_dictionaries(
        {"g": st.integers(0, 2)},
        optional={
            # NUL and lone surrogates are refused (test_hostile_input covers them)
            "t": st.text(
                st.characters(exclude_characters="\x00", exclude_categories=("Cs",)), max_size=4
            ),
            "l": st.lists(st.integers(), max_size=2),
        },
    ),
    seed=st.integers(0, 4),
    n_tokens=st.integers(1, 3),
)
TOL = 2e-3


class IndexMachine(RuleBasedStateMachine):
    """An engine (in memory or on a folder) and the model it must equal."""

    def __init__(self) -> None:
        super().__init__()
        self.tmp = scratch_dir("colmax-stateful-")
        self.model = Model()
        self.engine: Engine | None = None
        self.n_folders = 0

    def _folder(self) -> Path:
        self.n_folders += 1
        return self.tmp / f"idx{self.n_folders}"

    @property
    def e(self) -> Engine:
        assert self.engine is not None
        return self.engine

    @initialize(on_disk=st.booleans())
    def start(self, on_disk: bool) -> None:
        self.engine = Engine(dim=DIM, path=self._folder() if on_disk else None)

    # ------------------------------------------------------------------ writes
    @rule(batch=st.lists(st.tuples(id_strategy, doc_strategy), min_size=1, max_size=4))
    def add(self, batch: list[tuple[str, Doc]]) -> None:
        ids = [i for i, _ in batch]
        docs = [d for _, d in batch]
        call: dict[str, Any] = {
            "documents": [d.text for d in docs],
            "ids": ids,
            "metadatas": [dict(d.metadata) for d in docs],
            "embeddings": [d.vectors() for d in docs],
        }
        if len(set(ids)) < len(ids):
            with pytest.raises(DuplicateIdError):
                self.e.add(**call)
            return  # the invariant checks nothing changed
        assert self.e.add(**call) == ids
        self.model.upsert(ids, docs)

    @rule(ids=st.lists(id_strategy, min_size=1, max_size=3, unique=True))
    def delete(self, ids: list[str]) -> None:
        if any(i not in self.model.docs for i in ids):
            with pytest.raises(UnknownIdError):
                self.e.delete(ids)
            return
        assert self.e.delete(ids) == len(ids)
        self.model.delete(ids)

    # ------------------------------------------------------------------ persistence
    @rule()
    def save_copy(self) -> None:
        target = self.e.save(self._folder())
        with Engine.load(target) as copy:
            assert_engine_matches(copy, self.model, "saved copy")

    @rule()
    def reopen(self) -> None:
        """Close and ``Engine.load`` the folder; an in-memory engine is saved to one first."""
        path = self.e.path if self.e.path is not None else self.e.save(self._folder())
        self.e.close()
        self.engine = Engine.load(path)
        assert_engine_matches(self.e, self.model, "reopened")

    # ------------------------------------------------------------------ reads
    @rule(
        seed=st.integers(0, 6),
        n=st.integers(1, 3),
        k=st.integers(1, 12),
        group=st.none() | st.integers(0, 2),
    )
    def search(self, seed: int, n: int, k: int, group: int | None) -> None:
        query = raw_vectors(100 + seed, n)
        flt = None if group is None else {"g": group}
        hits = self.e.search(query_embeddings=query, k=k, filter=flt)
        allowed = {
            i: maxsim(query, d.stored())
            for i, d in self.model.docs.items()
            if group is None or d.metadata["g"] == group
        }
        assert len(hits) == min(k, len(allowed))
        assert [h.rank for h in hits] == list(range(len(hits)))
        assert len({h.id for h in hits}) == len(hits)
        order = list(self.model.docs)  # oldest first: the tie-break
        for hit in hits:
            doc = self.model.docs[hit.id]
            assert hit.id in allowed and abs(hit.score - allowed[hit.id]) <= TOL
            assert hit.text == doc.text and hit.metadata == dict(doc.metadata)
        for a, b in zip(hits, hits[1:]):
            assert a.score >= b.score
            if a.score == b.score:
                assert order.index(a.id) < order.index(b.id), "ties go to the older document"
        if hits:  # nothing left out scores better than what was returned (up to float noise)
            floor = min(h.score for h in hits)
            returned = {h.id for h in hits}
            assert all(s <= floor + TOL for i, s in allowed.items() if i not in returned)

    @rule(ids=st.lists(id_strategy, min_size=1, max_size=3))
    def get(self, ids: list[str]) -> None:
        if any(i not in self.model.docs for i in ids):
            with pytest.raises(UnknownIdError):
                self.e.get(ids)
            return
        docs = self.e.get(ids)
        assert [d.id for d in docs] == ids
        assert [(d.text, d.metadata) for d in docs] == [
            (self.model.docs[i].text, dict(self.model.docs[i].metadata)) for i in ids
        ]

    @invariant()
    def same_ids_in_the_same_order(self) -> None:
        if self.engine is not None:
            assert self.e.ids() == list(self.model.docs)
            assert len(self.e) == len(self.model.docs)
            assert all((i in self.e) == (i in self.model.docs) for i in IDS)

    def teardown(self) -> None:
        try:
            if self.engine is not None:
                assert_engine_matches(self.e, self.model, "at the end")
                self.e.close()
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)


IndexMachine.TestCase.settings = rel_settings(max_examples=scaled(20))
TestIndexAgainstModel = IndexMachine.TestCase
