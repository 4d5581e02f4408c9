"""Crash safety: a writer SIGKILLed at any point leaves the state before or after its operation.

See :mod:`crash_harness` for the scenario and the checks. The default suite kills the writer
once inside every operation of the scenario (create, add, upsert, delete, the two merge
policies, save to a new folder, save over an existing index) at a step chosen by a fixed seed,
plus a few random-delay kills; ``COLMAX_RELIABILITY_PROFILE=long`` kills it after every single
durable step. ``benchmarks/stress_crash.py`` runs hundreds more and reports the counts.

The seed (the scenario's data and the kill point chosen inside each operation) differs from run
to run; it is printed, and ``COLMAX_CRASH_SEED=<n>`` repeats a run.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from crash_harness import CrashServer, DryRun, TrialResult, check_trial, scenario, trial
from rel_helpers import PROFILE

SEED = int(os.environ.get("COLMAX_CRASH_SEED") or random.SystemRandom().randrange(10**9))
N_OPS = len(scenario(SEED))  # the shape of the scenario does not depend on the seed


@pytest.fixture(scope="module")
def server() -> Iterator[CrashServer]:
    print(f"crash tests: COLMAX_CRASH_SEED={SEED}")  # shown with a failure's captured output
    with CrashServer() as srv:
        yield srv


@pytest.fixture(scope="module")
def dry(server: CrashServer, tmp_path_factory: pytest.TempPathFactory) -> DryRun:
    return server.dry_run(tmp_path_factory.mktemp("crash") / "dry", SEED)


def _report(results: list[TrialResult]) -> str:
    lines = [f"{r.how}: op {r.op} -> {r.problems}" for r in results if r.problems]
    return "\n".join([f"COLMAX_CRASH_SEED={SEED}", *lines]) if lines else ""


def test_dry_run_reaches_every_code_path(dry: DryRun) -> None:
    """The scenario commits, merges (segment files unlinked) and publishes saved folders."""
    kinds = {label.split(":")[0] for label in dry.labels}
    assert {"fsync", "replace", "rename", "unlink", "write", "uncommitted"} <= kinds
    assert sum(label == "commit" for label in dry.labels) >= N_OPS - 1
    assert any(label.startswith("unlink:seg-") for label in dry.labels), "no merge happened"
    assert len(dry.op_starts) == N_OPS


@pytest.mark.parametrize("op", range(N_OPS), ids=lambda i: f"op{i}-{scenario(SEED)[i].kind}")
def test_kill_inside_each_operation(
    op: int, server: CrashServer, dry: DryRun, tmp_path: Path
) -> None:
    points = list(dry.points_of(op))
    if PROFILE != "long":
        # One durable step and one mid-write point (when the operation writes files).
        rng = random.Random(f"{SEED}:{op}")
        halfway = [k for k in points if dry.labels[k - 1].startswith("write:")]
        points = sorted({rng.choice(points), *([rng.choice(halfway)] if halfway else [])})
    results = [trial(server, tmp_path / f"k{k}", SEED, kill_at=k, dry=dry) for k in points]
    assert all(r.killed for r in results)
    assert not _report(results), _report(results)
    # The journal agrees with the kill point: the operation was in flight.
    assert all(r.op == op and not r.finished for r in results)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_kill_after_a_random_delay(
    seed: int, server: CrashServer, dry: DryRun, tmp_path: Path
) -> None:
    delay = random.Random(f"{SEED}:{seed}").uniform(0.0, dry.seconds)
    result = trial(server, tmp_path / "t", SEED + seed, delay=delay)
    assert not result.problems, (SEED, result.problems)
    assert result.matched in ("before", "after")


def test_the_checks_catch_a_half_applied_write(server: CrashServer, tmp_path: Path) -> None:
    """Self-test of the harness: a writer that commits an add document by document, killed
    after its 3rd commit (the 2nd document of the first add), must be reported as a mix."""
    root = tmp_path / "broken"
    reply = server.run(root, SEED, kill_on=["commit", 3], non_atomic_add=True)
    assert reply["killed"]
    result = check_trial(root, SEED, "kill on the 3rd commit", killed=True)
    assert result.op == 1 and not result.finished
    assert not result.matched and result.problems, "a half-applied add went unnoticed"
