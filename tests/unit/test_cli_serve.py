"""`colmax serve` refuses bad settings before it loads anything (the server itself is tested
through a real process in tests/integration/test_server_*.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from colmax.cli import main
from colmax.cli._server_options import is_loopback

pytest.importorskip("fastapi")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--max-k", "0"], "max_k must be a positive integer"),
        (["--max-body-bytes", "-5"], "max_body_bytes must be a positive integer"),
        (["--api-key", "  "], "the API key is empty"),
    ],
)
def test_bad_settings_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    assert main(["serve", str(tmp_path), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("colmax serve: error: ") and message in err


def test_empty_key_in_the_environment_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLMAX_API_KEY", "")
    assert main(["serve", str(tmp_path)]) == 2
    assert "the API key is empty" in capsys.readouterr().err


def test_serving_a_folder_that_is_not_an_index(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("COLMAX_API_KEY", raising=False)
    assert main(["serve", str(tmp_path)]) == 2
    assert "not a colmax index" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("localhost", True),
        ("::1", True),
        ("0.0.0.0", False),
        ("example.org", False),
    ],
)
def test_loopback_detection(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


@pytest.mark.parametrize(
    ("given", "bind", "key", "expected"),
    [
        (None, "127.0.0.1", None, None),  # the settings' default: loopback names only
        (None, "0.0.0.0", None, None),  # a wildcard bind adds no name
        (None, "10.0.0.5", None, ("localhost", "127.0.0.1", "::1", "[::1]", "10.0.0.5")),
        (None, "fd00::5", None, ("localhost", "127.0.0.1", "::1", "[::1]", "[fd00::5]")),
        (None, "10.0.0.5", "k", None),  # with a key: any host
        (["search.internal"], "0.0.0.0", None, ("search.internal",)),
    ],
)
def test_allowed_hosts_from_the_command_line(
    given: list[str] | None, bind: str, key: str | None, expected: tuple[str, ...] | None
) -> None:
    from colmax.cli._server_options import allowed_hosts_for

    assert allowed_hosts_for(given, bind, key) == expected
