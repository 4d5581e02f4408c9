"""Foreign, truncated, corrupted and booby-trapped index folders.

Opening and using such a folder must either work (a damaged payload byte may change a score:
there are no checksums) or raise a ``ColmaxError``, most often ``IndexFormatError`` naming the
file. It must never raise anything else, never modify or delete a file (in the folder or
anywhere a link points), never unpickle, and never allocate memory for sizes a file merely
announces.
"""

from __future__ import annotations

import json
import os
import pickle
import resource
import shutil
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from rel_helpers import (
    DIM,
    engine_fingerprint,
    fingerprint,
    raw_vectors,
    rel_settings,
    scaled,
    scratch_dir,
)

from colmax import Engine
from colmax.errors import ColmaxError, IndexFormatError


@pytest.fixture(scope="module")
def pristine() -> Iterator[Path]:
    """A closed index: 2 segments, an upsert and a delete, metadata; WAL checkpointed."""
    root = scratch_dir("colmax-pristine-")
    folder = root / "idx"
    with Engine(dim=DIM, path=folder) as engine:
        engine.add(
            ["one", "two", "three"],
            ids=["a", "b", "c"],
            metadatas=[{"g": 1}, {"g": 2}, {"tags": ["x"]}],
            embeddings=[raw_vectors(i, 2 + i) for i in range(3)],
        )
        engine.add(
            ["four", "two v2"], ids=["d", "b"], embeddings=[raw_vectors(9, 2), raw_vectors(8, 1)]
        )
        engine.delete(["c"])
    assert not (folder / "documents.sqlite-wal").exists()
    yield folder
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def copy(pristine: Path, fast_dir: Path) -> Path:
    target = fast_dir / "idx"
    shutil.copytree(pristine, target)
    return target


def _content_files(folder: Path) -> list[str]:
    return [rel for rel, digest in fingerprint(folder).items() if digest != "dir"]


# Reported bugs in files this suite does not own, tolerated by attempt() so the other checks
# keep running. Empty: every bug found so far is fixed and has its own test below.
KNOWN_BUGS: dict[str, tuple[type[BaseException], str]] = {}


def attempt(folder: Path) -> str:
    """Open and use ``folder``; returns ``"refused"``, ``"worked"`` or ``"known bug: ..."``.
    Raises AssertionError on any other exception or if a file changed."""
    before = fingerprint(folder)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    outcome = "worked"
    try:
        with Engine.load(folder, lock_timeout=1.0) as engine:
            ids = engine.ids()
            engine.get(ids)
            engine.info()
            assert len(engine) >= 0
            if ids:
                query = raw_vectors(77, 2)
                engine.search(query_embeddings=query, k=len(ids))
                engine.search(query_embeddings=query, k=3, filter={"g": {"$gte": 1}})
                engine.rerank(None, ids=ids, query_embedding=query)
    except ColmaxError:
        outcome = "refused"
    except Exception as exc:
        known = [k for k, (t, m) in KNOWN_BUGS.items() if isinstance(exc, t) and m in str(exc)]
        if not known:
            raise
        outcome = f"known bug: {known[0]}"
    grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss) / 1024
    assert grown_mb < 200, f"peak memory grew by {grown_mb:.0f} MB"
    after = fingerprint(folder)
    changed = sorted(k for k in set(before) | set(after) if before.get(k) != after.get(k))
    assert not changed, f"opening a damaged folder changed {changed}"
    return outcome


# ---------------------------------------------------------------------------- truncation
def test_every_file_truncated_at_every_cut(pristine: Path, fast_dir: Path) -> None:
    outcomes: dict[str, str] = {}
    reference = Engine.load(pristine)
    expected = engine_fingerprint(reference)
    reference.close()
    for rel in _content_files(pristine):
        size = (pristine / rel).stat().st_size
        for cut in sorted({0, 1, size // 2, size - 1}):
            folder = fast_dir / f"t{len(outcomes)}"
            shutil.copytree(pristine, folder)
            with open(folder / rel, "r+b") as handle:
                handle.truncate(cut)
            outcome = attempt(folder)
            outcomes[f"{rel}@{cut}"] = outcome
            if outcome == "worked":  # then nothing may have been lost silently
                with Engine.load(folder) as engine:
                    assert engine_fingerprint(engine) == expected, f"{rel}@{cut} lost data"
            shutil.rmtree(folder)
    # Every .npy and the manifest are validated on open: any truncation is caught.
    # (Cutting the manifest's final newline leaves valid JSON: that one may load.)
    newline_only = f"manifest.json@{(pristine / 'manifest.json').stat().st_size - 1}"
    worked = [k for k, v in outcomes.items() if v == "worked" and k != newline_only]
    assert all(k.startswith("documents") for k in worked), worked


# ---------------------------------------------------------------------------- corruption
@rel_settings(max_examples=scaled(100))
@given(data=st.data())
def test_flipped_bytes(pristine: Path, data: st.DataObject) -> None:
    files = _content_files(pristine)
    rel = data.draw(st.sampled_from(files), label="file")
    size = (pristine / rel).stat().st_size
    offsets = data.draw(st.lists(st.integers(0, size - 1), min_size=1, max_size=4), label="offsets")
    mask = data.draw(st.integers(1, 255), label="xor")
    root = scratch_dir("colmax-flip-")
    try:
        folder = root / "idx"
        shutil.copytree(pristine, folder)
        raw = bytearray((folder / rel).read_bytes())
        for offset in offsets:
            raw[offset] ^= mask
        (folder / rel).write_bytes(bytes(raw))
        attempt(folder)
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_a_schema_damaged_into_invalid_utf8_is_refused(copy: Path) -> None:
    """SQLite quotes the damaged schema text in its error message; the message itself is not
    valid UTF-8 (found by flipping bytes: it escaped as UnicodeDecodeError)."""
    db = copy / "documents.sqlite"
    raw = db.read_bytes()
    assert raw.count(b"tabledocumentsdocuments") == 1  # sqlite_master: type, name, tbl_name
    db.write_bytes(raw.replace(b"tabledocumentsdocuments", b"tabledocumen\xeasdocuments"))
    assert attempt(copy) == "refused"


# ---------------------------------------------------------------------------- links
def test_a_linked_segments_folder_is_refused_and_its_target_untouched(
    copy: Path, fast_dir: Path
) -> None:
    victim = fast_dir / "victim"
    shutil.copytree(copy / "segments", victim)
    (victim / "precious.txt").write_text("do not delete")
    shutil.rmtree(copy / "segments")
    (copy / "segments").symlink_to(victim, target_is_directory=True)
    before = fingerprint(victim)
    with pytest.raises(IndexFormatError, match="link"):
        Engine.load(copy)
    assert fingerprint(victim) == before, "files outside the index folder were deleted"


@pytest.mark.parametrize("which", ["segment", "documents.sqlite", "manifest.json", "write.lock"])
def test_linked_files_are_refused(copy: Path, fast_dir: Path, which: str) -> None:
    if which == "segment":
        which = "segments/" + sorted(os.listdir(copy / "segments"))[0]
    elsewhere = fast_dir / "elsewhere"
    if (copy / which).exists():
        shutil.copy(copy / which, elsewhere)
        (copy / which).unlink()
    else:
        elsewhere.write_text("outside")
    (copy / which).symlink_to(elsewhere)
    before = fingerprint(fast_dir)
    with pytest.raises(IndexFormatError, match="link"):
        Engine.load(copy)
    assert fingerprint(fast_dir) == before


# ---------------------------------------------------------------------------- pickle
class _Trap:
    """Unpickling this creates a marker file: proof that code ran."""

    marker: Path

    def __reduce__(self) -> tuple[Any, ...]:
        return (Path.touch, (self.marker,))


@pytest.mark.parametrize("part", ["tokens", "offsets", "keys"])
def test_object_arrays_are_refused_and_never_unpickled(
    copy: Path, fast_dir: Path, part: str
) -> None:
    trap = _Trap()
    trap.marker = fast_dir / "PWNED"
    target = next((copy / "segments").glob(f"*.{part}.npy"))
    payload = np.empty(2, dtype=object)
    payload[0], payload[1] = trap, trap
    with open(target, "wb") as handle:
        np.lib.format.write_array(handle, payload, allow_pickle=True)
    assert b"touch" in target.read_bytes()  # the file really carries a pickle
    with pytest.raises(IndexFormatError, match=target.name):
        Engine.load(copy)
    assert not trap.marker.exists()
    pickle.loads(pickle.dumps(1))  # (pickle itself works here: the refusal is colmax's)


# ---------------------------------------------------------------------------- announced sizes
def _edit_manifest(folder: Path, **changes: Any) -> None:
    data = json.loads((folder / "manifest.json").read_text())
    data.update(changes)
    (folder / "manifest.json").write_text(json.dumps(data))


MANIFESTS: dict[str, Any] = {
    "dim-huge": {"dim": 10**12},
    "dim-max-but-wrong": {"dim": 65536},
    "dim-negative": {"dim": -8},
    "dim-string": {"dim": "8"},
    "dim-bool": {"dim": True},
    "version-future": {"format_version": 10**9},
    "version-zero": {"format_version": 0},
    "foreign-format": {"format": "chroma"},
    "dtype-object": {"dtype": "object"},
    "index-kind-path": {"index": {"kind": "../../x"}},
    "encoder-unknown-setting": {
        "encoder": {"model_name_or_path": "/nonexistent", "trust_remote_code": True}
    },
    "encoder-missing-model": {"encoder": {"model_name_or_path": "/nonexistent/model"}},
    "encoder-list": {"encoder": [1, 2]},
    "counts-absurd": {"counts": {"documents": 10**18, "tokens": -1}},
}


@pytest.mark.parametrize("name", list(MANIFESTS))
def test_manifests_announcing_impossible_things(copy: Path, name: str) -> None:
    _edit_manifest(copy, **MANIFESTS[name])
    outcome = attempt(copy)
    # Counts are a summary (the database is authoritative): absurd ones are ignored.
    assert outcome == ("worked" if name == "counts-absurd" else "refused"), name


@pytest.mark.parametrize(
    "chunking",
    [{"tokens": -3}, {"tokens": 3, "overlap": 3}, {"tokens": 3, "sep": 1}, {"tokens": "3"}, [3]],
)
def test_a_damaged_chunking_entry_is_the_folders_fault(copy: Path, chunking: Any) -> None:
    """It raised the chunker's InvalidInputError ("chunk size must be ..."), no path."""
    _edit_manifest(copy, chunking=chunking)
    with pytest.raises(IndexFormatError, match="manifest.json: 'chunking' must be"):
        Engine.load(copy)
    _edit_manifest(copy, chunking={"tokens": 3, "overlap": 1})
    with Engine.load(copy) as engine:
        assert engine.chunker is not None and engine.chunker.overlap == 1


@pytest.mark.parametrize(
    "content",
    [b"", b"\x00" * 64, b"[" * 200_000 + b"]" * 200_000, b"[1, 2]", b'{"format": ', b"\xff\xfe{}"],
    ids=["empty", "zeros", "deeply-nested", "a-list", "cut-json", "not-utf8"],
)
def test_unreadable_manifests(copy: Path, content: bytes) -> None:
    (copy / "manifest.json").write_bytes(content)
    assert attempt(copy) == "refused"


def test_a_huge_manifest_is_not_read_into_memory(copy: Path) -> None:
    with open(copy / "manifest.json", "ab") as handle:
        handle.truncate(64 * 2**20)  # sparse: 64 MB announced, nothing allocated to write it
    assert attempt(copy) == "refused"


def test_an_npy_header_announcing_an_absurd_shape(copy: Path) -> None:
    target = next((copy / "segments").glob("*.tokens.npy"))
    raw = target.read_bytes()
    header_len = int.from_bytes(raw[8:10], "little")
    header = raw[10 : 10 + header_len].decode("latin1").rstrip(" \n")
    shape = header[header.index("(") : header.index(")") + 1]
    bigger = header.replace(shape, f"({2**40}, {DIM})")
    assert len(bigger) < header_len  # same header size, so the data offset is unchanged
    padded = bigger.ljust(header_len - 1).encode("latin1") + b"\n"
    target.write_bytes(raw[:10] + padded + raw[10 + header_len :])
    assert attempt(copy) == "refused"


SQL_DAMAGE = {
    "segment-tokens-huge": "UPDATE segments SET n_tokens = 1000000000000",
    "segment-docs-negative": "UPDATE segments SET n_docs = -1",
    "segment-name-traversal": "UPDATE segments SET name = '../../outside' WHERE rowid = (SELECT min(rowid) FROM segments)",
    "segment-name-with-dot": "UPDATE segments SET name = name || '.x' WHERE rowid = (SELECT min(rowid) FROM segments)",
    "meta-generation-missing": "DELETE FROM meta WHERE name = 'generation'",
    "metadata-not-json": "UPDATE documents SET metadata = 'not json'",
    "metadata-a-list": "UPDATE documents SET metadata = '[1, 2]'",
    "metadata-deep": "UPDATE documents SET metadata = '{\"a\": ' || replace(hex(zeroblob(3000)), '00', '[') || '1' || replace(hex(zeroblob(3000)), '00', ']') || '}'",
    "text-a-blob": "UPDATE documents SET text = x'00ff'",
    "id-a-blob": "UPDATE documents SET id = x'00ff' WHERE key = (SELECT min(key) FROM documents)",
    "foreign-schema": "DROP TABLE documents; CREATE TABLE documents (x)",
    "documents-a-view": "ALTER TABLE documents RENAME TO d2; CREATE VIEW documents AS SELECT * FROM d2",
    "schema-from-the-future": "PRAGMA user_version = 99",
}


@pytest.mark.parametrize("name", list(SQL_DAMAGE))
def test_database_contents_that_cannot_be(copy: Path, fast_dir: Path, name: str) -> None:
    if name == "segment-name-traversal":  # a file the traversal would reach
        (fast_dir / "outside.tokens.npy").write_bytes(b"")
    conn = sqlite3.connect(copy / "documents.sqlite")
    conn.executescript(SQL_DAMAGE[name])
    conn.commit()
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    assert attempt(copy) == "refused", name


def test_a_damaged_next_key_is_refused_at_the_first_write(copy: Path) -> None:
    conn = sqlite3.connect(copy / "documents.sqlite")
    conn.execute("UPDATE meta SET value = 'abc' WHERE name = 'next_key'")
    conn.commit()
    conn.close()
    assert attempt(copy) == "worked"  # reading never needs it
    before = fingerprint(copy)
    with Engine.load(copy) as engine, pytest.raises(IndexFormatError, match="next_key"):
        engine.add(embeddings=[raw_vectors(1, 1)], ids=["new"])
    assert fingerprint(copy) == before


def test_a_document_without_vectors_is_detected(copy: Path) -> None:
    conn = sqlite3.connect(copy / "documents.sqlite")
    conn.execute("INSERT INTO documents VALUES (999, 'ghost', 'no vectors', '{}')")
    conn.commit()
    conn.close()
    assert _strict(copy) == "refused"


def _strict(folder: Path) -> str:
    """``attempt`` without the known-bug allowance."""
    saved = dict(KNOWN_BUGS)
    KNOWN_BUGS.clear()
    try:
        return attempt(folder)
    finally:
        KNOWN_BUGS.update(saved)


def test_a_damaged_npy_header_is_refused(copy: Path) -> None:
    target = next((copy / "segments").glob("*.keys.npy"))
    raw = target.read_bytes()
    target.write_bytes(raw.replace(b"'shape': (", b"'shape': )", 1))
    assert _strict(copy) == "refused"


def test_a_damaged_keys_file_is_detected(copy: Path) -> None:
    target = next((copy / "segments").glob("*.keys.npy"))
    keys = np.load(target)
    keys[0] += 1000
    np.save(target, keys)
    assert _strict(copy) == "refused"


def test_a_misnamed_segment_row_does_not_delete_the_real_files(copy: Path) -> None:
    conn = sqlite3.connect(copy / "documents.sqlite")
    conn.execute(
        "UPDATE segments SET name = substr(name, 1, 13) || 'deadbeef' WHERE rowid = (SELECT min(rowid) FROM segments)"
    )
    conn.commit()
    conn.close()
    attempt(copy)


# ---------------------------------------------------------------------------- foreign folders
def test_foreign_folders_are_refused_and_left_alone(fast_dir: Path) -> None:
    cases = {
        "empty": {},
        "some-project": {"README.md": "hi", "data.csv": "a,b"},
        "only-manifest-of-another-tool": {"manifest.json": json.dumps({"format": "lancedb"})},
        "manifest-without-database": None,
    }
    for name, files in cases.items():
        folder = fast_dir / name
        folder.mkdir()
        if files is None:
            shutil.copy(Path(__file__).parents[1] / "fixtures/index_v1/manifest.json", folder)
        else:
            for rel, text in files.items():
                (folder / rel).write_text(text)
        before = fingerprint(folder)
        with pytest.raises(ColmaxError):
            Engine.load(folder)
        if files:  # (an empty folder is a fine place to create an index)
            with pytest.raises(ColmaxError):
                Engine(dim=DIM, path=folder)
        assert fingerprint(folder) == before, name
    with pytest.raises(ColmaxError):
        Engine.load(fast_dir / "missing")
    (fast_dir / "a-file").write_text("x")
    with pytest.raises(ColmaxError):
        Engine.load(fast_dir / "a-file")


# ---------------------------------------------------------------------------- planted code paths
def test_a_plaid_codec_name_that_leaves_the_folder_is_refused(fast_dir: Path) -> None:
    """The database names the current plaid codec; a name with ``..`` must not be followed to
    files outside ``codecs/`` (e83c1de opened ``codecs/../../elsewhere/x.meta.npy``)."""
    folder = fast_dir / "plaid"
    options = {"train_tokens": 16, "n_centroids": 4}
    with Engine(dim=DIM, index="plaid", path=folder, index_options=options) as eng:
        eng.add(embeddings=[raw_vectors(i, 6) for i in range(8)], ids=[f"d{i}" for i in range(8)])
    conn = sqlite3.connect(folder / "documents.sqlite")
    (name,) = conn.execute("SELECT value FROM meta WHERE name = 'codec'").fetchone()
    elsewhere = fast_dir / "elsewhere"
    elsewhere.mkdir()
    for path in (folder / "codecs").glob(f"{name}.*"):
        shutil.copy(path, elsewhere / path.name.replace(name, "x", 1))
    conn.execute("UPDATE meta SET value = '../../elsewhere/x' WHERE name = 'codec'")
    conn.commit()
    conn.close()
    assert _strict(folder) == "refused"


PLANTED_SQL = {
    # A trigger runs inside colmax's own transaction, with its privileges: here it would
    # rewrite every document's text whenever one is added.
    "trigger": "CREATE TRIGGER t AFTER INSERT ON documents BEGIN "
    "UPDATE documents SET text = 'owned'; END",
    "view": "CREATE VIEW v AS SELECT * FROM documents",
    "extra-table": "CREATE TABLE notes (x)",
    "index-with-a-function": "CREATE INDEX i ON documents (lower(text))",
}


@pytest.mark.parametrize("name", list(PLANTED_SQL))
def test_planted_schema_objects_are_refused(copy: Path, name: str) -> None:
    conn = sqlite3.connect(copy / "documents.sqlite")
    conn.executescript(PLANTED_SQL[name])
    conn.commit()
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()
    before = fingerprint(copy)
    with pytest.raises(IndexFormatError, match="schema"):
        Engine.load(copy)
    assert fingerprint(copy) == before


def test_connections_do_not_trust_the_schema(copy: Path) -> None:
    """Belt and braces behind the schema check: SQLite's ``trusted_schema=OFF`` keeps any
    function that is not marked innocuous out of schema objects (triggers, views, indexes)."""
    from colmax.store.documents import DocumentStore

    store = DocumentStore.open(copy / "documents.sqlite")
    try:
        with store.transaction() as conn:
            assert conn.execute("PRAGMA trusted_schema").fetchone()[0] == 0
    finally:
        store.close()


# ---------------------------------------------------------------------------- model folders
@pytest.mark.parametrize("where", ["parent", "absolute", "transformer-parent"])
def test_model_modules_that_leave_the_folder_are_refused(fast_dir: Path, where: str) -> None:
    """``modules.json`` names module folders; one outside the model folder (``../x``, an
    absolute path) would load weights and configuration from anywhere. e83c1de followed them."""
    from colmax.encoders import load_encoder
    from colmax.errors import ModelLoadError
    from tiny_models import make_tiny_pylate_model

    model = make_tiny_pylate_model(fast_dir / "model")
    outside = fast_dir / "outside"
    modules = json.loads((model / "modules.json").read_text())
    kind = "Transformer" if where == "transformer-parent" else "Dense"
    module = next(m for m in modules if m["type"].endswith(kind))
    source = model / module["path"] if module["path"] else model
    shutil.copytree(source, outside, ignore=shutil.ignore_patterns("1_Dense"))
    module["path"] = str(outside) if where == "absolute" else "../outside"
    (model / "modules.json").write_text(json.dumps(modules))
    with pytest.raises(ModelLoadError, match="outside the model folder"):
        load_encoder(str(model))
