"""Writes through a real `colmax serve` process: refused without a key, durable once answered.

The durability test kills the server with SIGKILL while clients are still writing, restarts it
on the same folder, and checks that every write that got a 200 is there.
"""

from __future__ import annotations

import shutil
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from server_helpers import DOCS, ServerProcess, build_index

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")


@pytest.fixture(scope="module")
def index(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_index(tmp_path_factory.mktemp("server_writes"))


@pytest.fixture(scope="module")
def read_only(index: Path) -> Iterator[ServerProcess]:
    with ServerProcess(index) as proc:  # no key, no --allow-unauthenticated-writes
        yield proc


def test_without_a_key_writes_are_refused_and_reads_work(read_only: ServerProcess) -> None:
    with httpx.Client(base_url=read_only.url, timeout=60) as client:
        added = client.post("/documents", json={"documents": [{"id": "x", "text": "hello"}]})
        assert added.status_code == 403 and "--api-key" in added.json()["detail"]
        deleted = client.request("DELETE", "/documents", json={"ids": ["cat"]})
        assert deleted.status_code == 403
        hits = client.post("/search", json={"query": "the cat sat", "k": 2}).json()["results"][0]
        assert hits[0]["id"] == "cat"
        assert (
            client.post("/rerank", json={"query": "cat", "ids": ["cat", "car"]}).status_code == 200
        )
        assert client.get("/info").json()["documents"] == len(DOCS)
        assert client.get("/info").json()["settings"]["auth"] is False


def _writer(
    url: str, key: str, worker: int, acked: dict[str, str | None], stop: threading.Event
) -> None:
    """Write ids ``w<worker>-<n>``: add, upsert every third, delete every fifth; record acks.

    ``acked[id]`` is the text the id must have (``None``: deleted) after its last answered
    write. An id is dropped from ``acked`` while a write to it is in flight: if the server dies
    before answering, either state is correct.
    """

    def send(client: httpx.Client, id_: str, state: str | None) -> bool:
        acked.pop(id_, None)
        if state is None:
            response = client.request("DELETE", "/documents", json={"ids": [id_]})
        else:
            body = {"documents": [{"id": id_, "text": state, "metadata": {"worker": worker}}]}
            response = client.post("/documents", json=body)
        if response.status_code != 200:
            return False
        acked[id_] = state
        return True

    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60) as c:
        n = 0
        try:
            while not stop.is_set():
                id_ = f"w{worker}-{n}"
                if not send(c, id_, f"worker {worker} document {n} first version"):
                    return
                if n % 3 == 0 and not send(c, id_, f"worker {worker} document {n} second"):
                    return
                if n % 5 == 0 and not send(c, id_, None):
                    return
                n += 1
        except httpx.TransportError:
            return  # the server was killed


def test_every_acknowledged_write_survives_a_kill(index: Path, tmp_path: Path) -> None:
    folder = Path(shutil.copytree(index, tmp_path / "index"))
    key = "durability-key"
    acked: dict[str, str | None] = {}
    stop = threading.Event()
    server = ServerProcess(folder, api_key=key, log=tmp_path / "server.log").start()
    threads = [
        threading.Thread(target=_writer, args=(server.url, key, w, acked, stop)) for w in range(4)
    ]
    for t in threads:
        t.start()
    while sum(v is not None for v in list(acked.values())) < 12 and all(
        t.is_alive() for t in threads
    ):
        time.sleep(0.05)
    server.stop(kill=True)  # SIGKILL while the writers are still sending
    stop.set()
    for t in threads:
        t.join(timeout=60)
    answered = dict(acked)
    assert sum(v is None for v in answered.values()) >= 1  # deletes were acknowledged too

    again = ServerProcess(folder, api_key=key, log=tmp_path / "server2.log")
    with again, httpx.Client(base_url=again.url, headers=again.headers, timeout=60) as client:
        for id_, text in answered.items():
            response = client.get(f"/documents/{id_}")
            if text is None:
                assert response.status_code == 404, id_
            else:
                assert response.status_code == 200, id_
                assert response.json()["text"] == text
        for id_ in DOCS:
            assert client.get(f"/documents/{id_}").status_code == 200
        # the search index agrees with the document store: every live write is found, no
        # deleted one is
        for worker in range(4):
            body = {"query": "document", "k": 1000, "filter": {"worker": worker}}
            found = {h["id"] for h in client.post("/search", json=body).json()["results"][0]}
            mine = {i: t for i, t in answered.items() if i.startswith(f"w{worker}-")}
            assert {i for i, t in mine.items() if t is not None} <= found
            assert not {i for i, t in mine.items() if t is None} & found
