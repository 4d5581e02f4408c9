"""``GET /documents/{id}`` through a real ``colmax serve`` process, for ids holding ``/``.

``Engine.add_files`` makes ids from file paths (``docs/a.pdf#page=1``): every one holds a slash.
Before, the route's plain ``{doc_id}`` did not match such a path even percent-encoded (the
router matches the decoded path), and the client got the router's generic ``Not Found``.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from server_helpers import ServerProcess, build_index

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")

KEY = "test-key-path-ids"
IDS = ["docs/a.pdf#page=1", "a b/c?d", "é/🙂", "dir/", "100%/x", ".."]


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    index = build_index(tmp_path_factory.mktemp("server_path_ids"))
    with (
        ServerProcess(index, api_key=KEY) as server,
        httpx.Client(base_url=server.url, headers=server.headers, timeout=60) as c,
    ):
        added = c.post(
            "/documents",
            json={
                "documents": [
                    {"id": id_, "text": f"text of {id_}", "metadata": {"n": n}}
                    for n, id_ in enumerate(IDS)
                ]
                + [{"id": "to/delete?", "text": "deleted by a test"}]
            },
        )
        assert added.status_code == 200, added.text
        yield c


def _url(id_: str) -> str:
    # quote() leaves "." alone; an id that is a dot segment must be sent encoded too, or the
    # client removes it from the path as RFC 3986 says.
    encoded = quote(id_, safe="")
    return "/documents/" + ("%2E" * len(id_) if id_ in (".", "..") else encoded)


@pytest.mark.parametrize("id_", IDS)
def test_an_id_with_a_slash_is_fetched(client: httpx.Client, id_: str) -> None:
    response = client.get(_url(id_))
    assert response.status_code == 200, response.text
    assert response.json() == {
        "id": id_,
        "text": f"text of {id_}",
        "metadata": {"n": IDS.index(id_)},
    }


def test_an_unknown_id_with_a_slash_is_the_servers_own_404(client: httpx.Client) -> None:
    response = client.get(_url("docs/never.pdf#page=2"))
    assert response.status_code == 404
    detail = response.json()["detail"]
    assert detail != "Not Found" and "not in the index" in detail
    assert "docs/never.pdf#page=2" in detail


def test_other_document_routes_are_unchanged(client: httpx.Client) -> None:
    assert client.get("/documents/cat").json()["id"] == "cat"
    # DELETE takes its ids in the body; a path after /documents/ is not a delete route.
    assert client.request("DELETE", _url("docs/a.pdf#page=1")).status_code == 405
    assert client.get(_url("docs/a.pdf#page=1")).status_code == 200
    assert client.get(_url("to/delete?")).status_code == 200
    deleted = client.request("DELETE", "/documents", json={"ids": ["to/delete?"]})
    assert deleted.status_code == 200 and deleted.json()["deleted"] == 1
    assert client.get(_url("to/delete?")).status_code == 404
    paths = client.get("/openapi.json").json()["paths"]
    assert "/documents/{doc_id}" in paths and not any(":" in p for p in paths)
