"""A generated 3-page PDF with a text layer, indexed and searched through every door.

Engine, CLI, HTTP server, LangChain retriever and LlamaIndex retriever all answer the same
question about the same index with the same pages, each carrying source, page, text layer and
a way to the page image. The model is the tiny random ColPali (no download), so rankings are
compared across doors, not judged.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from colmax import Engine
from colmax.cli import main

pytest.importorskip("pypdfium2", reason='pip install "colmax[vision]"')
from colmax.vision.tiny import SAMPLE_PAGES

QUERY = "sales table"


@pytest.fixture(scope="module")
def index(
    tiny_colpali_model: Path, text_pdf: Path, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    out = tmp_path_factory.mktemp("doors") / "idx"
    code = main(
        [
            "index",
            str(text_pdf),
            "--model",
            str(tiny_colpali_model),
            "--out",
            str(out),
            "--dpi",
            "40",
            "-q",
        ]
    )
    assert code == 0
    return out


@pytest.fixture(scope="module")
def expected(index: Path) -> list[tuple[str, int, str]]:
    with Engine.load(index) as engine:
        hits = engine.search(QUERY, k=3)
        assert len(engine) == 3
        return [(h.id, h.metadata["page"], h.text) for h in hits]


def test_engine(expected, text_pdf: Path) -> None:
    assert sorted(p for _, p, _ in expected) == [1, 2, 3]
    for id_, page, text in expected:
        assert id_ == f"{text_pdf}#page={page}" and text == SAMPLE_PAGES[page - 1]


def test_cli(index: Path, expected, capsys, tmp_path: Path) -> None:
    assert main(["search", str(index), QUERY, "-k", "3", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)["hits"]
    assert [(h["id"], h["metadata"]["page"], h["text"]) for h in hits] == expected
    assert main(["search", str(index), QUERY, "-k", "1", "--explain", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "q1-1.png").read_bytes()[:4] == b"\x89PNG"


def test_server(index: Path, expected) -> None:
    pytest.importorskip("fastapi")
    from fastapi.testclient import TestClient

    from colmax.server import create_app

    with Engine.load(index) as engine:
        client = TestClient(create_app(engine), base_url="http://localhost")  # a loopback Host
        reply = client.post("/search", json={"query": QUERY, "k": 3}).json()["results"][0]
        assert [(h["id"], h["metadata"]["page"], h["text"]) for h in reply] == expected
        image = client.get("/page-image", params={"id": expected[0][0]})
        assert (
            image.status_code == 200 and image.content == engine.page_image_bytes(expected[0][0])[0]
        )


def test_langchain(index: Path, expected) -> None:
    pytest.importorskip("langchain_colmax")
    from langchain_colmax import ColmaxRetriever

    with Engine.load(index) as engine:
        docs = ColmaxRetriever(engine=engine, k=3, include_images=True).invoke(QUERY)
        assert [(d.id, d.metadata["page"], d.page_content) for d in docs] == expected
        for d in docs:
            assert d.metadata["source"].endswith("report.pdf")
            assert Path(d.metadata["image_path"]).read_bytes() == base64.b64decode(
                d.metadata["image_base64"]
            )
            assert d.metadata["image_mime_type"] == "image/png"
        plain = ColmaxRetriever(engine=engine, k=1).invoke(QUERY)[0]
        assert "image_base64" not in plain.metadata and "image_path" in plain.metadata


def test_llamaindex(index: Path, expected) -> None:
    pytest.importorskip("llama_index.retrievers.colmax")
    from llama_index.core.schema import ImageNode
    from llama_index.retrievers.colmax import ColmaxRetriever

    with Engine.load(index) as engine:
        nodes = ColmaxRetriever(engine, similarity_top_k=3).retrieve(QUERY)
        assert [
            (n.node.node_id, n.node.metadata["page"], n.node.get_content()) for n in nodes
        ] == expected
        for n in nodes:
            assert isinstance(n.node, ImageNode) and Path(n.node.image_path).is_file()
            assert n.node.image_mimetype == "image/png" and n.node.image is None
        with_image = ColmaxRetriever(engine, similarity_top_k=1, include_images=True).retrieve(
            QUERY
        )[0]
        assert base64.b64decode(with_image.node.image)[:4] == b"\x89PNG"


def test_in_memory_engine_gives_images_inline(tiny_colpali_model: Path, text_pdf: Path) -> None:
    pytest.importorskip("llama_index.retrievers.colmax")
    from llama_index.retrievers.colmax import ColmaxRetriever

    engine = Engine.from_pretrained(tiny_colpali_model)
    engine.add_files([text_pdf], dpi=20)
    node = ColmaxRetriever(engine, similarity_top_k=1).retrieve(QUERY)[0].node
    assert node.image_path is None and base64.b64decode(node.image)[:4] == b"\x89PNG"
