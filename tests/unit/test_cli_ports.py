"""`colmax serve` and `colmax mcp --http` refuse a bad address, port, endpoint path, timeout or
chunk size while parsing their arguments (exit code 2, argparse's message naming the option),
before the model and the index are loaded, instead of a traceback from the socket or the router
once they are; good values reach uvicorn and the server settings unchanged."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import pytest

from colmax.cli import main

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")


class _FakeEngine:
    encoder = None

    def __enter__(self) -> _FakeEngine:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def __len__(self) -> int:
        return 3


@pytest.fixture
def served(monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """Nothing is loaded or bound: records what would have been (``load``, ``app``, ``run``)."""
    import uvicorn

    import colmax.server
    from colmax.engine import Engine

    seen: dict[str, Any] = {}

    def load(path: str, **kwargs: Any) -> _FakeEngine:
        seen["load"] = {"path": path, **kwargs}
        return _FakeEngine()

    def create_app(engine: Any, settings: Any) -> str:
        seen["app"] = {"settings": settings}
        return "app"

    def run(app: Any, **kwargs: Any) -> None:
        seen["run"] = kwargs

    monkeypatch.delenv("COLMAX_API_KEY", raising=False)
    monkeypatch.setattr(Engine, "load", load)
    monkeypatch.setattr(colmax.server, "create_app", create_app)
    monkeypatch.setattr(uvicorn, "run", run)
    try:
        import colmax.mcp.server
    except ImportError:  # no colmax[mcp]: the serve tests still run
        return seen

    def streamable_http_app(engine: Any, settings: Any, **kwargs: Any) -> str:
        seen["app"] = {"settings": settings, **kwargs}
        return "app"

    monkeypatch.setattr(colmax.mcp.server, "streamable_http_app", streamable_http_app)
    return seen


def _command(command: str, folder: Path) -> list[str]:
    return ["serve", str(folder)] if command == "serve" else ["mcp", str(folder), "--http"]


def _refused(argv: list[str], capsys: pytest.CaptureFixture[str]) -> str:
    """argparse's error for ``argv`` (exit code 2), from stderr."""
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    return capsys.readouterr().err


COMMANDS = ["serve", "mcp"]


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("port", ["70000", "65536", "-5", "0", "eighty", "80.5", ""])
def test_a_port_outside_1_to_65535_is_refused(
    command: str,
    port: str,
    tmp_path: Path,
    served: dict[str, Any],
    capsys: pytest.CaptureFixture[str],
) -> None:
    err = _refused([*_command(command, tmp_path), "--port", port], capsys)
    assert f"colmax {command}: error: argument --port: " in err
    assert f"must be a port number from 1 to 65535, got {port!r}" in err
    assert "Traceback" not in err and "load" not in served and "run" not in served


@pytest.mark.parametrize(
    "path", ["mcp", "", "mcp/", " /mcp", "/m cp", "/mcp\n", "/mcp\t", "/mcp\x00", "/mcp?x", "/#x"]
)
def test_an_mcp_path_not_starting_with_a_slash_or_with_odd_characters_is_refused(
    path: str, tmp_path: Path, served: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    pytest.importorskip("mcp")
    err = _refused(["mcp", str(tmp_path), "--http", "--path", path], capsys)
    assert "colmax mcp: error: argument --path: " in err
    assert repr(path) in err
    if not path.startswith("/"):
        assert "must start with '/'" in err
    else:
        assert "spaces, control characters, '?' or '#'" in err
    assert "load" not in served and "run" not in served


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize(
    ("host", "message"),
    [
        ("local host", "spaces or control characters"),
        ("127.0.0.1\n", "spaces or control characters"),
        ("[::1]", "an IPv6 address goes without brackets: '::1'"),
        ("no-such-host.invalid", "cannot be resolved"),
    ],
)
def test_a_host_that_cannot_be_bound_is_refused(
    command: str,
    host: str,
    message: str,
    tmp_path: Path,
    served: dict[str, Any],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = socket.getaddrinfo

    def getaddrinfo(name: Any, *args: Any, **kwargs: Any) -> Any:
        if name == "no-such-host.invalid":  # whatever this machine's resolver says
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    err = _refused([*_command(command, tmp_path), "--host", host], capsys)
    assert f"colmax {command}: error: argument --host: " in err
    assert message in err and repr(host) in err
    assert "load" not in served and "run" not in served


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("seconds", ["inf", "-inf", "nan", "1e999", "0", "-1", "soon", ""])
def test_a_request_timeout_that_is_not_finite_and_positive_is_refused(
    command: str,
    seconds: str,
    tmp_path: Path,
    served: dict[str, Any],
    capsys: pytest.CaptureFixture[str],
) -> None:
    # "=": argparse would take a lone "-inf" for an option
    err = _refused([*_command(command, tmp_path), f"--request-timeout={seconds}"], capsys)
    assert f"colmax {command}: error: argument --request-timeout: " in err
    assert f"must be a positive, finite number of seconds, got {seconds!r}" in err
    assert "load" not in served and "run" not in served


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--chunk-tokens", "0"], "argument --chunk-tokens: must be a positive integer"),
        (["--chunk-tokens", "-3"], "argument --chunk-tokens: must not be negative"),
        (["--chunk-tokens", "ten"], "argument --chunk-tokens: must be an integer"),
        (["--chunk-overlap", "-1"], "argument --chunk-overlap: must not be negative"),
    ],
)
def test_serve_refuses_a_bad_chunk_size_before_loading(
    args: list[str],
    message: str,
    tmp_path: Path,
    served: dict[str, Any],
    capsys: pytest.CaptureFixture[str],
) -> None:
    err = _refused(["serve", str(tmp_path), *args], capsys)
    assert f"colmax serve: error: {message}" in err
    assert "load" not in served


def test_serve_refuses_an_overlap_as_long_as_the_chunks_before_loading(
    tmp_path: Path, served: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["serve", str(tmp_path), "--chunk-tokens", "10", "--chunk-overlap", "10"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "colmax serve: error: --chunk-overlap must be below --chunk-tokens (10), got 10" in err
    assert "load" not in served


@pytest.mark.parametrize(
    ("host", "port"),
    [("127.0.0.1", "1"), ("localhost", "65535"), ("::1", "8080"), ("0.0.0.0", "8000")],
)
def test_serve_passes_good_values_on(
    host: str, port: str, tmp_path: Path, served: dict[str, Any]
) -> None:
    argv = ["serve", str(tmp_path), "--host", host, "--port", port]
    argv += ["--request-timeout", "2.5", "--chunk-tokens", "64", "--chunk-overlap", "8"]
    assert main(argv) == 0
    assert served["run"]["host"] == host and served["run"]["port"] == int(port)
    assert served["app"]["settings"].request_timeout == 2.5
    assert served["load"]["chunk_tokens"] == 64 and served["load"]["chunk_overlap"] == 8


def test_serve_defaults_are_unchanged(tmp_path: Path, served: dict[str, Any]) -> None:
    from colmax import limits

    assert main(["serve", str(tmp_path)]) == 0
    assert (served["run"]["host"], served["run"]["port"]) == ("127.0.0.1", 8000)
    assert served["app"]["settings"].request_timeout == limits.REQUEST_TIMEOUT_S
    assert served["load"]["chunk_tokens"] is None and served["load"]["chunk_overlap"] == 0


@pytest.mark.parametrize(
    ("host", "port", "path"),
    [
        ("127.0.0.1", "8000", "/mcp"),
        ("localhost", "1", "/"),
        ("::1", "65535", "/api/v1/mcp"),
    ],
)
def test_mcp_passes_good_values_on(
    host: str, port: str, path: str, tmp_path: Path, served: dict[str, Any]
) -> None:
    pytest.importorskip("mcp")
    argv = ["mcp", str(tmp_path), "--http", "--host", host, "--port", port, "--path", path]
    assert main([*argv, "--request-timeout", "7"]) == 0
    assert served["run"]["host"] == host and served["run"]["port"] == int(port)
    assert served["app"]["path"] == path and served["app"]["host"] == host
    assert served["app"]["settings"].request_timeout == 7.0


def test_mcp_defaults_are_unchanged(tmp_path: Path, served: dict[str, Any]) -> None:
    pytest.importorskip("mcp")
    assert main(["mcp", str(tmp_path), "--http"]) == 0
    assert (served["run"]["host"], served["run"]["port"]) == ("127.0.0.1", 8000)
    assert served["app"]["path"] == "/mcp"
