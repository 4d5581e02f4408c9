"""Schemathesis against a real `colmax serve` process: generated requests, valid and invalid,
to every operation in `/openapi.json`; none may get a 5xx.

Bounded: a fixed number of examples per operation and generation mode (about 30 s in all on a
2-core machine), no shrinking database.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from server_helpers import ServerProcess, build_index

schemathesis = pytest.importorskip("schemathesis")
pytest.importorskip("fastapi")

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis.errors import Unsatisfiable  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402

EXAMPLES = 40  # per operation and generation mode


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    index = build_index(tmp_path_factory.mktemp("schemathesis"))
    # Small limits, so generated bodies hit them; writes open so POST/DELETE run for real.
    args = ["--allow-unauthenticated-writes", "--max-k=20", "--max-documents=4"]
    args += ["--max-text-chars=300", "--max-queries=3", "--max-body-bytes=4000"]
    with ServerProcess(index, *args, "--chunk-tokens=8") as proc:
        yield proc


def test_open_writes_are_accepted_without_a_key(server: ServerProcess) -> None:
    body = {"documents": [{"id": "open", "text": "written without a key"}]}
    assert httpx.post(f"{server.url}/documents", json=body, timeout=60).status_code == 200


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_generated_request_gets_a_server_error(
    server: ServerProcess, mode: GenerationMode
) -> None:
    raw = httpx.get(f"{server.url}/openapi.json", timeout=60).json()
    schema = schemathesis.openapi.from_dict(raw)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {op.path for op in operations} >= {"/search", "/rerank", "/documents", "/info"}
    seen: dict[int, int] = {}

    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def check(case: schemathesis.Case) -> None:
            response = case.call(base_url=server.url, timeout=60)
            seen[response.status_code] = seen.get(response.status_code, 0) + 1
            assert response.status_code < 500, (
                f"{case.method} {case.formatted_path} body={case.body!r:.300} -> "
                f"{response.status_code} {response.text[:300]}"
            )

        try:
            check()
        except Unsatisfiable:
            # Nothing to make invalid (GET /health has no parameters): no negative cases.
            assert mode is GenerationMode.NEGATIVE
    print(f"{mode.value}: status codes {dict(sorted(seen.items()))}")
    assert sum(seen.values()) >= len(operations) * 5, seen  # requests really were made
    assert seen.get(200 if mode is GenerationMode.POSITIVE else 422, 0) > 0, seen
    assert httpx.get(f"{server.url}/health", timeout=60).status_code == 200
