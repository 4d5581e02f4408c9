"""Turn an index folder that RAGatouille built into a colmax index, without re-encoding.

RAGatouille (0.0.x, colbert-ai backend) keeps an index in
``.ragatouille/colbert/indexes/<name>/``: the colbert-ai PLAID files (read by
:mod:`colmax.compat.colbert_plaid`) plus three JSON files of its own:

- ``collection.json``: the passage texts, position = passage id (pid);
- ``pid_docid_map.json``: pid -> the user's document id (a document split into several
  passages has several pids);
- ``docid_metadata_map.json`` (optional): document id -> the user's metadata dict.

Each live passage becomes one colmax document with its decoded token vectors. A document that
RAGatouille kept whole keeps its id; a document it split gets the ids ``"<id>#0"``, ``"<id>#1"``,
... and the metadata keys ``parent_id`` and ``chunk_index`` (the convention of
:mod:`colmax.chunking`, so :func:`colmax.chunking.collapse_hits` groups them again). The
model recorded in ``metadata.json`` (or the one passed) becomes the new index's encoder, with
the index's ``query_maxlen`` and ``doc_maxlen``, so the new index encodes queries and further
documents exactly as the old one did.

Vectors come back as colbert-ai stored them: residual-compressed (2 or 4 bits per dimension),
so scores differ slightly from a fresh encoding; re-encode with ``Engine.add`` for full
precision.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from colmax.compat.colbert_plaid import PlaidIndex, read_json, read_plaid_index
from colmax.errors import (
    EncoderMismatchError,
    IndexFormatError,
    InvalidInputError,
    ModelLoadError,
)
from colmax.store.fsutil import publish_folder, remove_stale_staging, staging_path
from colmax.store.storage import check_free

if TYPE_CHECKING:
    from colmax.encoders.base import Encoder
    from colmax.engine import Engine

__all__ = ["RagatouillePassage", "import_ragatouille_index", "read_ragatouille_index"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RagatouillePassage:
    """One live passage of a RAGatouille index and the colmax document it becomes."""

    pid: int
    id: str
    text: str
    metadata: dict[str, Any]


def read_ragatouille_index(
    src: str | Path,
) -> tuple[PlaidIndex, list[RagatouillePassage]]:
    """Read a RAGatouille index folder: the PLAID part and its live passages, in pid order.

    Args:
        src: the index folder (the path ``RAGPretrainedModel.index`` returned).

    Returns:
        ``(plaid_index, passages)``; deleted passages (absent from ``pid_docid_map.json`` or
        with no token left in the index) are left out.

    Raises:
        IndexFormatError: a file is missing or damaged, or the files disagree.
    """
    src = Path(src)
    plaid = read_plaid_index(src)
    collection = read_json(src / "collection.json")
    if not isinstance(collection, list) or not all(isinstance(t, str) for t in collection):
        raise IndexFormatError(f"{src / 'collection.json'}: expected a list of passage texts")
    pid_map = _pid_docid_map(src / "pid_docid_map.json", plaid.num_passages)
    meta_path = src / "docid_metadata_map.json"
    metadata = read_json(meta_path) if meta_path.is_file() else {}
    if not isinstance(metadata, dict):
        raise IndexFormatError(f"{meta_path}: expected an object document id -> metadata")

    texts = _texts_by_pid(src, collection, pid_map, plaid.num_passages)
    doclens = {
        chunk.passage_offset + j: int(n)
        for chunk in plaid.chunks
        for j, n in enumerate(chunk.doclens)
    }
    live = [pid for pid in sorted(pid_map) if doclens[pid] > 0]
    if len(live) < len(pid_map):
        logger.warning("%d passages have no vectors in %s; skipped", len(pid_map) - len(live), src)
    per_doc: dict[str, list[int]] = {}
    for pid in live:
        per_doc.setdefault(pid_map[pid], []).append(pid)
    passages = []
    for pid in live:
        doc_id = pid_map[pid]
        meta = _metadata(metadata.get(doc_id), meta_path, doc_id)
        siblings = per_doc[doc_id]
        if len(siblings) == 1:
            passages.append(RagatouillePassage(pid, doc_id, texts[pid], meta))
            continue
        n = siblings.index(pid)
        meta = {**meta, "parent_id": doc_id, "chunk_index": n}
        passages.append(RagatouillePassage(pid, f"{doc_id}#{n}", texts[pid], meta))
    ids = [p.id for p in passages]
    if len(set(ids)) != len(ids):
        raise IndexFormatError(
            f"{src}: document ids collide with the ids given to split documents (<id>#<n>)"
        )
    return plaid, passages


def import_ragatouille_index(
    src: str | Path,
    dst: str | Path,
    model: str | Path | Encoder | None = None,
    *,
    device: str | None = None,
    batch_size: int = 2048,
    **encoder_kwargs: Any,
) -> Engine:
    """Convert a RAGatouille (colbert-ai PLAID) index folder into a colmax index folder.

    Nothing is re-encoded: the stored residual-compressed vectors are decoded and added as
    precomputed embeddings. The new folder appears complete or not at all.

    Args:
        src: the RAGatouille index folder, e.g. ``.ragatouille/colbert/indexes/my_index``.
        dst: the colmax index folder to create (must not exist, or be empty).
        model: the model for queries and new documents: a Hub id, a folder, or a loaded
            encoder. ``None`` loads the checkpoint recorded in the index's ``metadata.json``
            with its ``query_maxlen`` / ``doc_maxlen``.
        device: device for the encoder.
        batch_size: passages decoded and added per step (bounds memory).
        **encoder_kwargs: encoder settings overriding those of the index.

    Returns:
        An engine on ``dst``, ready to search.

    Raises:
        IndexFormatError: ``src`` is not a readable RAGatouille / colbert-ai index, or ``dst``
            is a non-empty folder.
        ModelLoadError: the recorded checkpoint cannot be loaded (pass ``model=``).
        EncoderMismatchError: the model's dimension differs from the index's.

    Examples:
        >>> engine = import_ragatouille_index(  # doctest: +SKIP
        ...     ".ragatouille/colbert/indexes/my_index", "my-colmax-index")
        >>> engine.search("what is late interaction?", k=3)  # doctest: +SKIP
    """
    from colmax.engine import Engine

    target = Path(dst).absolute()
    check_free(target)
    plaid, passages = read_ragatouille_index(src)
    encoder = _encoder(plaid, model, device, encoder_kwargs)
    if encoder.dim != plaid.dim:
        raise EncoderMismatchError(
            f"{src} holds vectors of dimension {plaid.dim}, but {encoder.name!r} gives "
            f"{encoder.dim}; pass the model the index was built with"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_staging(target)  # an earlier import into it that was killed
    staging = staging_path(target)
    try:
        with Engine(encoder, path=staging) as engine:
            _copy_passages(engine, plaid, passages, batch_size)
        publish_folder(staging, target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    logger.info("imported %d passages from %s into %s", len(passages), src, target)
    return Engine.load(target, encoder=encoder)


def _copy_passages(
    engine: Engine, plaid: PlaidIndex, passages: list[RagatouillePassage], batch_size: int
) -> None:
    by_pid = {p.pid: p for p in passages}
    for first_pid, vectors in plaid.iter_vectors(batch=batch_size):
        keep = [
            (by_pid[first_pid + j], v) for j, v in enumerate(vectors) if first_pid + j in by_pid
        ]
        if keep:
            engine.add(
                [p.text for p, _ in keep],
                ids=[p.id for p, _ in keep],
                metadatas=[p.metadata for p, _ in keep],
                embeddings=[v for _, v in keep],
            )


def _encoder(
    plaid: PlaidIndex, model: Any, device: str | None, overrides: dict[str, Any]
) -> Encoder:
    if model is not None and not isinstance(model, (str, Path)):
        if overrides or device is not None:  # they would be silently dropped
            given = sorted(overrides) + (["device"] if device is not None else [])
            raise InvalidInputError(
                f"{', '.join(given)} go with a model name or folder, not a loaded encoder "
                "(it has its settings and device already)"
            )
        return model  # type: ignore[no-any-return]
    from colmax.encoders import load_encoder

    name = str(model) if model is not None else plaid.checkpoint
    if name is None:
        raise ModelLoadError(
            f"{plaid.folder / 'metadata.json'} records no checkpoint; pass model=..."
        )
    settings: dict[str, Any] = {}
    for ours, theirs in (("query_length", "query_maxlen"), ("document_length", "doc_maxlen")):
        value = plaid.config.get(theirs)
        if isinstance(value, int) and not isinstance(value, bool):
            settings[ours] = value
    settings.update(overrides)
    try:
        return load_encoder(name, device=device, **settings)
    except ModelLoadError as exc:
        if model is not None:
            raise
        raise ModelLoadError(
            f"{exc}\nThe index records the checkpoint {name!r}; if it moved, pass model=... "
            "(the same weights) to import_ragatouille_index"
        ) from exc


def _pid_docid_map(path: Path, num_passages: int) -> dict[int, str]:
    raw = read_json(path)
    if not isinstance(raw, dict):
        raise IndexFormatError(f"{path}: expected an object passage id -> document id")
    out: dict[int, str] = {}
    for key, value in raw.items():
        try:
            pid = int(key)
        except ValueError:
            raise IndexFormatError(f"{path}: passage id {key!r} is not an integer") from None
        if not 0 <= pid < num_passages:
            raise IndexFormatError(
                f"{path}: passage id {pid} is outside the index's {num_passages} passages"
            )
        if not isinstance(value, (str, int)) or isinstance(value, bool) or str(value) == "":
            raise IndexFormatError(f"{path}: invalid document id {value!r} for passage {pid}")
        out[pid] = str(value)
    return out


def _texts_by_pid(
    src: Path, collection: list[str], pid_map: Mapping[int, str], num_passages: int
) -> dict[int, str]:
    if len(collection) == num_passages:
        return {pid: collection[pid] for pid in pid_map}
    if len(collection) == len(pid_map):
        # RAGatouille's delete_from_index drops the deleted texts from collection.json but
        # keeps the surviving pids: the i-th surviving pid owns the i-th text.
        return dict(zip(sorted(pid_map), collection))
    raise IndexFormatError(
        f"{src / 'collection.json'} holds {len(collection)} texts, but the index has "
        f"{num_passages} passages of which {len(pid_map)} are mapped to documents"
    )


def _metadata(value: Any, path: Path, doc_id: str) -> dict[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise IndexFormatError(f"{path}: metadata of document {doc_id!r} is not an object")
    return dict(value)
