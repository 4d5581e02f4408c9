"""The server's page endpoints: the page image and its heatmap; explanations carry patches."""

from __future__ import annotations

from pathlib import Path

import pytest

from colmax import Engine

pytest.importorskip("pypdfium2", reason='pip install "colmax[vision]"')
pytest.importorskip("fastapi", reason='pip install "colmax[server]"')
from fastapi.testclient import TestClient

from colmax.server import create_app

PNG = b"\x89PNG\r\n\x1a\n"


def test_page_endpoints(colpali_encoder, text_pdf: Path, tmp_path: Path) -> None:
    engine = Engine(colpali_encoder, path=tmp_path / "idx")
    ids = engine.add_files([text_pdf], dpi=30)
    client = TestClient(create_app(engine), base_url="http://localhost")  # a loopback Host
    found = client.post("/search", json={"query": "sales table", "k": 3, "explain": True}).json()
    hit = found["results"][0][0]
    assert hit["metadata"]["page"] in (1, 2, 3)
    assert hit["explanation"]["page"]["grid"] == [8, 8]
    assert len(hit["explanation"]["page"]["matched_patches"]) == len(hit["explanation"]["matches"])
    image = client.get("/page-image", params={"id": ids[1]})  # ids hold "/" and "#"
    assert image.status_code == 200 and image.headers["content-type"] == "image/png"
    assert image.content == engine.page_image_bytes(ids[1])[0]
    heat = client.get("/page-heatmap", params={"id": ids[0], "query": "sales table"})
    assert heat.status_code == 200 and heat.content[:8] == PNG
    one = client.get("/page-heatmap", params={"id": ids[0], "query": "sales", "token": 2})
    assert one.status_code == 200
    assert client.get("/page-image", params={"id": "nope"}).status_code == 404
    bad = client.get("/page-heatmap", params={"id": ids[0], "query": "x", "token": 999})
    assert bad.status_code == 422


def test_text_documents_have_no_page(tiny_colbert_model: Path) -> None:
    engine = Engine.from_pretrained(tiny_colbert_model)
    engine.add(["a text"], ids=["t"])
    client = TestClient(create_app(engine), base_url="http://localhost")  # a loopback Host
    reply = client.get("/page-image", params={"id": "t"})
    assert reply.status_code == 422 and "no page image" in reply.json()["detail"]
    hit = client.post("/search", json={"query": "text", "explain": True}).json()["results"][0][0]
    assert hit["explanation"]["page"] is None
