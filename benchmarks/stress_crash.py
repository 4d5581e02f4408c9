"""Crash-safety stress run: SIGKILL a writer N times and count what survived.

Each trial runs the scenario of ``tests/reliability/crash_harness.py`` (create, add, upsert,
delete, both merge policies, save to a new folder, save over an existing index) in a fresh
folder and kills the writer with SIGKILL: even trials right after a durable step picked at
random among all of the scenario's steps (every fsync, rename, unlink and SQLite commit), odd
trials after a random delay. Then it checks that every folder opens, holds exactly the state
before or after the interrupted operation, has no orphan files, and accepts a new write.

Usage:
    .venv/bin/python benchmarks/stress_crash.py [--trials 100] [--seed 0] [--dir DIR]

``--dir`` decides the file system (default: the system temp folder, a real disk here); the run
stops with exit status 1 if any trial failed.
"""

from __future__ import annotations

import argparse
import collections
import platform
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "reliability"))

from crash_harness import CrashServer, TrialResult, scenario, trial

__all__ = ["main"]


def _cpu() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or "unknown"
    fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    return f"{fields.get('Model name', '?').strip()}, {fields.get('CPU(s)', '?').strip()} CPUs"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--dir", type=Path, default=None, help="where trial folders go")
    args = parser.parse_args(argv)

    rng = random.Random(args.seed)
    root = Path(tempfile.mkdtemp(prefix="colmax-stress-", dir=args.dir))
    ops = scenario(args.seed)
    results: list[TrialResult] = []
    started = time.perf_counter()
    try:
        with CrashServer() as server:
            dry = server.dry_run(root / "dry", args.seed)
            # The dry run also snapshots every step; time a plain run for the random delays.
            duration = float(server.run(root / "timing", args.seed)["seconds"])
            print(
                f"scenario: {len(ops)} operations, {len(dry.labels)} durable steps, "
                f"{duration:.2f}s uninterrupted"
            )
            for i in range(args.trials):
                folder = root / f"t{i:05d}"
                if i % 2 == 0:
                    point = rng.randint(1, len(dry.labels))
                    result = trial(server, folder, args.seed, kill_at=point, dry=dry)
                else:
                    delay = rng.uniform(0.0, duration)
                    result = trial(server, folder, args.seed, delay=delay)
                results.append(result)
                if result.problems:
                    print(f"FAIL trial {i}: {result.how}: {result.problems}", flush=True)
                shutil.rmtree(folder, ignore_errors=True)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    _report(results, ops, time.perf_counter() - started, args)
    return 1 if any(r.problems for r in results) else 0


def _report(
    results: list[TrialResult], ops: list, seconds: float, args: argparse.Namespace
) -> None:
    killed = [r for r in results if r.killed]
    failed = [r for r in results if r.problems]
    matched = collections.Counter(r.matched or "none" for r in results)
    in_flight = collections.Counter(ops[r.op].kind for r in killed if not r.finished and r.op >= 0)
    print(f"\ncommand: {' '.join([sys.executable, *sys.argv])}")
    print(f"cpu: {_cpu()}; python {platform.python_version()}; sqlite {sqlite3.sqlite_version}")
    print(
        f"trials: {len(results)} in {seconds:.0f}s (folders under {args.dir or tempfile.gettempdir()})"
    )
    print(
        f"killed by SIGKILL: {len(killed)}; finished before the kill: {len(results) - len(killed)}"
    )
    print(f"operation in flight when killed: {dict(in_flight)}")
    print(f"state found: before the operation {matched['before']}, after it {matched['after']}")
    print(
        f"staging folders left after reopening (must be 0): {sum(r.leftover_staging for r in results)}"
    )
    print(f"FAILED: {len(failed)}")


if __name__ == "__main__":
    raise SystemExit(main())
