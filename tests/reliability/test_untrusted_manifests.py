"""Opening an index folder someone else made sends no secret and fetches nothing unasked.

- The model a manifest names is loaded from the local disk or the Hugging Face cache only;
  downloading it takes ``download=True`` (``--download`` on the command line). On e83c1de
  ``Engine.load`` fetched whatever Hub repository a folder named.
- (Qdrant) A manifest's server ``url`` never receives ``$COLMAX_QDRANT_API_KEY`` unless the
  caller names that same server; an API key never travels over plain http to another machine.

A local HTTP listener stands in for the Hub and for a Qdrant server: the tests check what
reached it.
"""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from colmax.encoders import load_encoder
from colmax.errors import ModelLoadError


class Listener:
    """An HTTP server on 127.0.0.1 that records every request and answers 404."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, dict[str, str]]] = []
        seen = self.requests

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self) -> None:
                seen.append((self.command, self.path, dict(self.headers)))
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_HEAD = do_POST = do_PUT = _answer

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def listener() -> Iterator[Listener]:
    server = Listener()
    yield server
    server.close()


@pytest.fixture
def fake_hub(listener: Listener, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Listener:
    """The Hub at the listener, an empty cache, online."""
    from huggingface_hub import constants

    monkeypatch.setattr(constants, "ENDPOINT", listener.url)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    return listener


def test_a_model_name_is_not_downloaded_unless_asked(fake_hub: Listener) -> None:
    with pytest.raises(ModelLoadError, match="download=True"):
        load_encoder("someone/their-model", download=False)
    assert fake_hub.requests == [], "a download was attempted"
    with pytest.raises(ModelLoadError):
        load_encoder("someone/their-model", download=True)
    assert fake_hub.requests, "download=True should have asked the Hub"


def test_engine_load_does_not_download_the_manifests_model(
    fake_hub: Listener, tmp_path: Path
) -> None:
    from colmax import Engine

    folder = tmp_path / "idx"
    Engine(dim=8, path=folder).close()
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["encoder"] = {"model_name_or_path": "attacker/model"}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelLoadError, match="download=True"):
        Engine.load(folder)
    assert fake_hub.requests == []


# ---------------------------------------------------------------------------- Qdrant credentials
KEY = "qdrant-secret-7f3a"


def _server_index(folder: Path, url: str) -> Path:
    """An index folder whose manifest says: a collection on the Qdrant server at ``url``."""
    from colmax import Engine

    pytest.importorskip("qdrant_client", reason='pip install "colmax[qdrant]"')
    Engine(dim=8, path=folder).close()
    manifest = json.loads((folder / "manifest.json").read_text())
    manifest["index"] = {"kind": "qdrant", "mode": "server", "url": url, "collection": "c"}
    (folder / "manifest.json").write_text(json.dumps(manifest))
    for name in ("documents.sqlite", "segments"):
        path = folder / name
        if path.is_dir():
            path.rmdir()
        else:
            path.unlink()
    return folder


def _keys_sent(listener: Listener) -> list[str]:
    return [
        value
        for _, _, headers in listener.requests
        for name, value in headers.items()
        if name.lower() in ("api-key", "authorization")
    ]


def test_the_environment_key_never_goes_to_a_manifests_url(
    listener: Listener, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from colmax import Engine
    from colmax.errors import ColmaxError

    monkeypatch.setenv("COLMAX_QDRANT_API_KEY", KEY)
    folder = _server_index(tmp_path / "idx", listener.url)
    with pytest.raises(ColmaxError, match="qdrant_url"):
        Engine.load(folder)
    with pytest.raises(ColmaxError, match="qdrant_url"):
        Engine.load(
            folder, index_options={"api_key": KEY}
        )  # a key, but the server is still the folder's choice
    assert _keys_sent(listener) == [], "the API key reached a URL read from the folder"
    # Naming the server yourself sends the key there (this listener is no Qdrant: it fails),
    # and qdrant-client warns that it goes over plain http.
    with (
        pytest.raises(ColmaxError),
        pytest.warns(UserWarning, match="insecure connection"),
    ):
        Engine.load(folder, index_options={"url": listener.url})
    assert KEY in " ".join(_keys_sent(listener))


def test_without_a_key_a_manifests_url_is_contacted_without_one(
    listener: Listener, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from colmax import Engine
    from colmax.errors import ColmaxError

    monkeypatch.delenv("COLMAX_QDRANT_API_KEY", raising=False)
    folder = _server_index(tmp_path / "idx", listener.url)
    with pytest.raises(ColmaxError):
        Engine.load(folder)
    assert listener.requests and _keys_sent(listener) == []


@pytest.mark.parametrize("url", ["http://10.255.255.1:6333", "http://qdrant.example:6333"])
def test_a_key_over_plain_http_to_another_machine_is_refused(url: str) -> None:
    from colmax import Engine
    from colmax.errors import ColmaxError

    pytest.importorskip("qdrant_client", reason='pip install "colmax[qdrant]"')
    start = __import__("time").perf_counter()
    with pytest.raises(ColmaxError, match="https"):
        Engine(dim=8, index="qdrant", index_options={"url": url, "api_key": KEY})
    assert __import__("time").perf_counter() - start < 2.0, "it tried to connect first"
