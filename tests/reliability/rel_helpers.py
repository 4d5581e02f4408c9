"""Shared pieces of the reliability tests: deterministic vectors, a plain-Python model of what an
index must contain, brute-force MaxSim over it, folder fingerprints, and hypothesis profiles.

Hypothesis profiles (select with ``COLMAX_RELIABILITY_PROFILE``; applied per test through
:data:`REL_SETTINGS`, so other suites keep their own settings):

- ``default``: a few dozen examples per property, sized so that ``tests/reliability`` runs in
  about two minutes on a busy 2-core machine;
- ``ci``: the same, derandomised (reproducible);
- ``long``: ten times more examples and longer stateful runs, for a soak run
  (``COLMAX_RELIABILITY_PROFILE=long pytest tests/reliability``).
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import HealthCheck, settings

from colmax import Engine

DIM = 8
PROFILE = os.environ.get("COLMAX_RELIABILITY_PROFILE", "default")
_COMMON: dict[str, Any] = {
    "deadline": None,  # a shared 2-core box makes per-example timings meaningless
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
}
_PROFILES = {
    "default": {"max_examples": 30, "stateful_step_count": 20},
    "ci": {"max_examples": 30, "stateful_step_count": 20, "derandomize": True},
    "long": {"max_examples": 300, "stateful_step_count": 60},
}
if PROFILE not in _PROFILES:
    raise RuntimeError(f"COLMAX_RELIABILITY_PROFILE must be one of {sorted(_PROFILES)}")
#: ``@REL_SETTINGS`` on a property test (or ``@rel_settings(max_examples=scaled(n))``).
REL_SETTINGS = settings(**_COMMON, **_PROFILES[PROFILE])
SCALE = 10 if PROFILE == "long" else 1


def scaled(n: int) -> int:
    """``n`` examples in the default profile, ten times more in ``long``."""
    return n * SCALE


def rel_settings(**overrides: Any) -> settings:
    """The profile's settings with some values changed (e.g. fewer examples for a slow test)."""
    return settings(REL_SETTINGS, **overrides)


# ---------------------------------------------------------------------------- vectors
def raw_vectors(seed: int, n_tokens: int, dim: int = DIM) -> np.ndarray:
    """Deterministic float32 token vectors for ``(seed, n_tokens)``."""
    return np.random.default_rng([seed, n_tokens]).normal(size=(n_tokens, dim)).astype(np.float32)


def stored(vectors: np.ndarray) -> np.ndarray:
    """What the index keeps: L2-normalised, rounded to float16 (back in float64 for scoring).

    Normalised in float64 after scaling each row by its largest absolute value, so rows of
    any magnitude, subnormal included, keep their direction (a float32 norm of 1e-45 values
    underflows to 0).
    """
    v = np.asarray(vectors, dtype=np.float64)
    v = v / np.abs(v).max(axis=1, keepdims=True)
    v = (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)
    return v.astype(np.float16).astype(np.float64)


def maxsim(query: np.ndarray, doc: np.ndarray) -> float:
    """Brute-force MaxSim: sum over query vectors of the best dot with a document vector."""
    q = np.asarray(query, dtype=np.float64)
    q = q / np.linalg.norm(q, axis=1, keepdims=True)
    return float((q @ np.asarray(doc, dtype=np.float64).T).max(axis=1).sum())


# ---------------------------------------------------------------------------- the model
@dataclass(frozen=True)
class Doc:
    """One document version as the model knows it."""

    text: str
    metadata: Mapping[str, Any]
    seed: int
    n_tokens: int

    def vectors(self) -> np.ndarray:
        return raw_vectors(self.seed, self.n_tokens)

    def stored(self) -> np.ndarray:
        return stored(self.vectors())


@dataclass
class Model:
    """Plain-Python expected contents: id -> Doc, in ``Engine.ids()`` order (oldest first)."""

    docs: dict[str, Doc] = field(default_factory=dict)

    def upsert(self, ids: list[str], docs: list[Doc]) -> None:
        for id_, doc in zip(ids, docs):
            self.docs.pop(id_, None)  # an upsert gets a new key: it moves to the end
            self.docs[id_] = doc

    def delete(self, ids: list[str]) -> None:
        for id_ in ids:
            del self.docs[id_]

    def copy(self) -> Model:
        return Model(dict(self.docs))


PROBES = [raw_vectors(1_000 + i, 2 + i) for i in range(3)]


def assert_engine_matches(engine: Engine, model: Model, where: str = "") -> None:
    """Ids (and their order), texts, metadata and stored vectors equal the model's."""
    mismatch = describe_mismatch(engine, model)
    assert mismatch is None, f"{where}: {mismatch}"


def describe_mismatch(engine: Engine, model: Model, atol: float = 2e-3) -> str | None:
    """``None`` when ``engine`` holds exactly ``model``; else what differs (first problem)."""
    ids = engine.ids()
    if ids != list(model.docs):
        return f"ids {ids} != expected {list(model.docs)}"
    if len(engine) != len(model.docs):
        return f"len(engine) {len(engine)} != {len(model.docs)}"
    if not ids:
        return None
    for got in engine.get(ids):
        want = model.docs[got.id]
        if got.text != want.text or got.metadata != json_roundtrip(want.metadata):
            return f"{got.id}: stored {got.text!r}/{got.metadata!r}, expected {want.text!r}/{want.metadata!r}"
    for q in PROBES:
        hits = engine.search(query_embeddings=q, k=len(ids))
        scores = {h.id: h.score for h in hits}
        if len(hits) != len(ids) or set(scores) != set(ids):
            return f"search(k=all) returned {sorted(scores)} instead of {sorted(ids)}"
        for id_, doc in model.docs.items():
            expected = maxsim(q, doc.stored())
            if abs(scores[id_] - expected) > atol:
                return (
                    f"{id_}: score {scores[id_]:.5f} != brute force {expected:.5f} (vectors differ)"
                )
    return None


def json_roundtrip(value: Any) -> Any:
    """What metadata looks like after storage (tuples become lists, and so on)."""
    return json.loads(json.dumps(value, allow_nan=False))


# ---------------------------------------------------------------------------- folders
def scratch_dir(prefix: str) -> Path:
    """A fresh folder in memory (``/dev/shm``) when the system has one, else in ``/tmp``.

    Tests about logic rather than durability use it: fsync on tmpfs is free, which makes a
    folder-backed write ~10x cheaper. (The crash tests stay on the real disk.)
    """
    shm = Path("/dev/shm")
    base = shm if shm.is_dir() and os.access(shm, os.W_OK) else None
    return Path(tempfile.mkdtemp(prefix=prefix, dir=base))


_VOLATILE = {"write.lock", "documents.sqlite-wal", "documents.sqlite-shm"}


def fingerprint(folder: Path) -> dict[str, str]:
    """``relative path -> sha256`` of every file colmax treats as content (not lock/WAL files).

    Symlinks are recorded as ``link:<target>`` and not followed.
    """
    out: dict[str, str] = {}
    if not folder.exists():
        return out
    for path in sorted(folder.rglob("*")):
        rel = str(path.relative_to(folder))
        if path.name in _VOLATILE:
            continue
        if path.is_symlink():
            out[rel] = f"link:{os.readlink(path)}"
        elif path.is_file():
            out[rel] = hashlib.sha256(path.read_bytes()).hexdigest()
        elif path.is_dir():
            out[rel] = "dir"
    return out


def engine_fingerprint(engine: Engine) -> tuple[Any, ...]:
    """Everything a user can observe: ids in order, documents, and scores on probe queries."""
    ids = engine.ids()
    docs = tuple((d.id, d.text, json.dumps(d.metadata, sort_keys=True)) for d in engine.get(ids))
    probes = [raw_vectors(1_000 + i, 2 + i, engine.dim) for i in range(3)]
    scores = tuple(
        tuple((h.id, round(h.score, 4)) for h in engine.search(query_embeddings=q, k=len(ids)))
        if ids
        else ()
        for q in probes
    )
    return tuple(ids), len(engine), docs, scores


# ---------------------------------------------------------------------------- versioned docs
def versioned(id_: str, version: str) -> tuple[str, dict[str, Any], np.ndarray]:
    """Text, metadata and vectors of one version of a document; each names the other two,
    so a hit whose text, metadata and vectors come from different writes is detectable."""
    seed = int.from_bytes(hashlib.sha256(f"{id_}|{version}".encode()).digest()[:4], "little")
    return f"{id_}|{version}", {"id": id_, "v": version}, raw_vectors(seed, 1 + seed % 4)


def check_versioned_hit(hit: Any, query: np.ndarray, atol: float = 2e-3) -> str:
    """The version a hit shows, after checking its text, metadata and score agree."""
    id_, _, version = hit.text.partition("|")
    text, meta, vectors = versioned(id_, version)
    if id_ != hit.id or {k: hit.metadata.get(k) for k in meta} != meta:
        raise AssertionError(f"hit {hit.id!r} has text {hit.text!r} and metadata {hit.metadata}")
    expected = maxsim(query, stored(vectors))
    if abs(hit.score - expected) > atol:
        raise AssertionError(f"{hit.text}: score {hit.score} but its vectors give {expected}")
    return version
