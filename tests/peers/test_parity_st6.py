"""colmax's token vectors equal sentence-transformers 6's on ``MultiVectorEncoder`` checkpoints.

sentence-transformers 6 runs on transformers 5 like colmax, so it lives in colmax's own
environment (the ``test`` extra), not in ``.venv-peers`` (PyLate 1.6 pins sentence-transformers
5.3). Each checkpoint is made here with sentence-transformers' ``MultiVectorEncoder`` and
``.save(folder)`` (``scripts/make_st6_checkpoints.py`` builds the MiniLM ones);
sentence-transformers then loads the *saved* folder and its ``encode_query`` /
``encode_document`` are the reference for colmax's ``Engine.from_pretrained(folder)``: same
token count per text, vectors within 1e-4.

- ``minilm``: ``MultiVectorEncoder(<all-MiniLM-L6-v2>)``, the conversion sentence-transformers
  does by itself (Pooling dropped, a seeded random 384 -> 128 token projection, no prompt, no
  expansion, no skiplist, lengths from the tokenizer);
- ``minilm_colbert``: the same weights assembled as a classic ColBERT (fixed query expansion
  to 32 ``[MASK]`` tokens, documents cut at 180, punctuation skiplist);
- ``minilm_attend``: as ``minilm_colbert`` with the expansion tokens attended to;
- ``tiny_markers``: the tiny random PyLate checkpoint converted by ``MultiVectorEncoder``
  (prompts ``"[Q] "`` / ``"[D] "`` registered as tokens);
- ``tiny_fixture``: not saved by sentence-transformers but written by hand by
  ``tests/tiny_models.make_tiny_st_model`` (the unit tests' fixture), loaded by both: this
  keeps that fixture honest.

Where sentence-transformers >= 6 is missing the tests skip, unless ``COLMAX_REQUIRE_PEERS=1``.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from colmax import Engine

ROOT = Path(__file__).resolve().parents[2]
ATOL = 1e-4
CHECKPOINTS = ("minilm", "minilm_colbert", "minilm_attend", "tiny_markers", "tiny_fixture")


def _script(name: str) -> Any:
    """A module of ``scripts/`` (they are scripts, not a package)."""
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# The awkward queries and documents of the PyLate parity check.
_TEXTS = _script("make_checkpoints")
QUERIES, DOCUMENTS = list(_TEXTS.QUERIES), list(_TEXTS.DOCUMENTS)


@pytest.fixture(scope="module")
def st() -> object:
    """The ``sentence_transformers`` module, version 6 or later."""
    try:
        import sentence_transformers
    except ImportError:
        sentence_transformers = None
    major = int(getattr(sentence_transformers, "__version__", "0").split(".")[0])
    if sentence_transformers is None or major < 6:
        reason = "sentence-transformers >= 6 is not installed (pip install -e '.[test]')"
        if os.environ.get("COLMAX_REQUIRE_PEERS", "") not in ("", "0"):
            pytest.fail(f"COLMAX_REQUIRE_PEERS=1 but {reason}", pytrace=False)
        pytest.skip(reason)
    return sentence_transformers


@pytest.fixture(scope="module")
def make_checkpoint(
    st: object, minilm_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> Callable[[str], Path]:
    """``make_checkpoint(name)``: the named checkpoint, saved by sentence-transformers."""
    import torch
    from sentence_transformers import MultiVectorEncoder

    sys.path.insert(0, str(ROOT / "tests"))
    from tiny_models import make_tiny_pylate_model, make_tiny_st_model

    builder = _script("make_st6_checkpoints")
    root = tmp_path_factory.mktemp("st6")

    def make(name: str) -> Path:
        if name == "tiny_fixture":
            return make_tiny_st_model(root / name)
        if name == "tiny_markers":
            torch.manual_seed(0)
            source = make_tiny_pylate_model(root / "tiny_src")
            MultiVectorEncoder(str(source), device="cpu").save(str(root / name))
            return root / name
        return Path(builder.build(name, root / name, minilm_path))

    return make


@pytest.mark.parametrize("name", CHECKPOINTS)
def test_engine_equals_sentence_transformers(
    make_checkpoint: Callable[[str], Path], name: str
) -> None:
    from sentence_transformers import MultiVectorEncoder

    folder = make_checkpoint(name)
    reference = MultiVectorEncoder(str(folder), device="cpu")
    engine = Engine.from_pretrained(folder, device="cpu", dtype="float32")
    assert engine.encoder is not None
    assert engine.info().encoder["format"] == "sentence-transformers"
    for texts, theirs_fn, ours_fn in (
        (QUERIES, reference.encode_query, engine.encoder.encode_queries),
        (DOCUMENTS, reference.encode_document, engine.encoder.encode_documents),
    ):
        theirs = [t.float().numpy() for t in theirs_fn(texts, batch_size=4)]
        ours = [o.numpy() for o in ours_fn(texts)]
        assert [len(o) for o in ours] == [len(t) for t in theirs], "token counts differ"
        worst = max(float(np.abs(o - t).max()) for o, t in zip(ours, theirs, strict=True))
        assert worst <= ATOL, f"max abs diff {worst:.2e} > {ATOL}"


def test_saved_index_reloads_the_same_encoder(
    make_checkpoint: Callable[[str], Path], tmp_path: Path
) -> None:
    """The manifest records the settings read from the files; Engine.load rebuilds them."""
    engine = Engine.from_pretrained(make_checkpoint("tiny_markers"), device="cpu", dtype="float32")
    engine.add(DOCUMENTS, ids=[str(i) for i in range(len(DOCUMENTS))])
    before = [(h.id, h.score) for h in engine.search(QUERIES[0], k=3)]  # type: ignore[union-attr]
    engine.save(tmp_path / "index")
    # The precision is the host's run-time choice, not part of the index: pin it on reload too.
    reopened = Engine.load(tmp_path / "index", device="cpu", dtype="float32")
    assert reopened.encoder is not None and engine.encoder is not None
    assert reopened.encoder.config() == engine.encoder.config()
    after = [(h.id, h.score) for h in reopened.search(QUERIES[0], k=3)]  # type: ignore[union-attr]
    assert [i for i, _ in after] == [i for i, _ in before]
    np.testing.assert_allclose([s for _, s in after], [s for _, s in before], atol=1e-4)
