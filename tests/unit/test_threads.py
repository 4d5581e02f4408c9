"""The thread policy (colmax.threads): idle OpenMP threads sleep, pools fit the usable CPUs."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from colmax import threads

# Measures how much CPU the process burns while its main thread sleeps right after a
# parallel region: spinning OpenMP workers burn it, sleeping ones do not.
_PROBE = """
import json, sys, time
if sys.argv[1] == "colmax":
    import colmax
import torch
x = torch.randn(4_000_000)
idle = 0.0
for _ in range(10):
    y = x * 2.0
    c = time.process_time()
    time.sleep(0.03)
    idle += time.process_time() - c
import os
print(json.dumps({"idle_cpu": idle, "threads": torch.get_num_threads(),
                  "policy": os.environ.get("OMP_WAIT_POLICY")}))
"""


def _probe(first: str) -> dict:
    env = {k: v for k, v in os.environ.items() if k != threads.WAIT_POLICY_ENV}
    out = subprocess.run(
        [sys.executable, "-c", _PROBE, first], capture_output=True, text=True, env=env, check=True
    )
    return json.loads(out.stdout)


def test_importing_colmax_first_makes_idle_threads_sleep() -> None:
    got = _probe("colmax")
    assert got["policy"] == "PASSIVE"
    if got["threads"] < 2:
        pytest.skip("one torch thread: no OpenMP workers to spin")
    # 10 sleeps of 30 ms: sleeping workers use (almost) no CPU meanwhile.
    assert got["idle_cpu"] < 0.01, got


def test_a_users_choice_is_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(threads.WAIT_POLICY_ENV, "ACTIVE")
    assert threads.prefer_passive_wait() is False
    assert os.environ[threads.WAIT_POLICY_ENV] == "ACTIVE"


def test_too_late_once_torch_is_loaded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(threads.WAIT_POLICY_ENV, raising=False)
    assert "torch" in sys.modules
    assert threads.prefer_passive_wait() is False
    assert threads.WAIT_POLICY_ENV not in os.environ


def test_fit_threads_lowers_an_oversubscribed_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    before = torch.get_num_threads()
    monkeypatch.setattr(threads, "usable_cpus", lambda: 1)
    try:
        torch.set_num_threads(3)
        assert threads.fit_threads() == 1
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_fit_threads_never_raises_the_pool(monkeypatch: pytest.MonkeyPatch) -> None:
    import torch

    before = torch.get_num_threads()
    monkeypatch.setattr(threads, "usable_cpus", lambda: 64)
    try:
        torch.set_num_threads(1)
        assert threads.fit_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_policy_report() -> None:
    policy = threads.current_policy()
    assert policy.usable_cpus >= 1
    assert policy.threads >= 1
