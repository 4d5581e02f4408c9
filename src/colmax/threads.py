"""Thread policy: how many threads torch computes with, and how its idle threads wait.

colmax computes with torch, whose CPU build runs its parallel regions on an OpenMP pool
(GNU libgomp). Two of its defaults hurt a search server that shares its cores:

- **Idle threads spin.** After each parallel region libgomp's workers busy-wait (up to about
  300,000 spins) for the next one before they sleep. A query runs dozens of small regions, so
  its workers spin between them, taking CPU from whatever else runs on the machine, and a
  worker that the kernel descheduled makes the next region's barrier wait for a whole time
  slice. Measured on this project's 2-core machine under load (``docs/benchmarks.md``, "Latency
  under contention"): a plaid-like query took 136 ms with spinning workers and 4.9 ms with
  sleeping ones. ``OMP_WAIT_POLICY=PASSIVE`` makes them sleep. libgomp reads it once, when
  torch loads it, so it must be in the environment before ``import torch``:
  :func:`prefer_passive_wait` sets it (unless the user chose a policy) when ``colmax`` is
  imported first, which the ``colmax`` command and server always do.
- **More threads than usable CPUs.** torch sizes its pool from the machine's cores, not from
  the CPUs this process may use (``taskset``, a container's CPU quota): oversubscribed threads
  wait on each other at every barrier. :func:`usable_cpus` counts what the process may use and
  :func:`fit_threads` lowers torch's pool to it, never raises it.

Examples:
    >>> policy = current_policy()
    >>> policy.threads >= 1 and policy.usable_cpus >= 1
    True
"""

from __future__ import annotations

import logging
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "WAIT_POLICY_ENV",
    "ThreadPolicy",
    "current_policy",
    "fit_threads",
    "prefer_passive_wait",
    "usable_cpus",
]

logger = logging.getLogger(__name__)

#: The environment variable libgomp (torch's OpenMP runtime) reads its wait policy from.
WAIT_POLICY_ENV = "OMP_WAIT_POLICY"
_CGROUP_CPU_MAX = Path("/sys/fs/cgroup/cpu.max")


@dataclass(frozen=True)
class ThreadPolicy:
    """What is in effect in this process.

    Attributes:
        wait_policy: ``OMP_WAIT_POLICY`` as set (``""``: libgomp's default, spinning).
        passive: whether idle threads sleep (the policy is ``PASSIVE``; it was either set
            before torch loaded, by :func:`prefer_passive_wait`, or chosen by the user).
        threads: torch's intra-op threads.
        usable_cpus: CPUs this process may run on (affinity and CPU quota).
    """

    wait_policy: str
    passive: bool
    threads: int
    usable_cpus: int


def prefer_passive_wait() -> bool:
    """Ask libgomp to let idle threads sleep, unless someone chose a wait policy or it is too
    late (torch already imported: its runtime read the environment then). Called when
    ``colmax`` is imported.

    Returns:
        Whether ``OMP_WAIT_POLICY=PASSIVE`` is in effect.
    """
    if WAIT_POLICY_ENV not in os.environ and "torch" not in sys.modules:
        os.environ[WAIT_POLICY_ENV] = "PASSIVE"
    return _is_passive()


def _is_passive() -> bool:
    return os.environ.get(WAIT_POLICY_ENV, "").strip().upper() == "PASSIVE"


def usable_cpus() -> int:
    """CPUs this process may use: its affinity mask, capped by a cgroup v2 CPU quota."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not on Linux
        cpus = os.cpu_count() or 1
    try:
        quota, period = _CGROUP_CPU_MAX.read_text().split()[:2]
        if quota != "max":
            cpus = min(cpus, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass
    return max(1, cpus)


def fit_threads() -> int:
    """Lower torch's intra-op threads to :func:`usable_cpus` when it has more (never raise
    them: a user's own ``torch.set_num_threads`` stands). Returns the thread count."""
    import torch

    threads = torch.get_num_threads()
    cpus = usable_cpus()
    if threads > cpus:
        logger.info("torch had %d threads for %d usable CPUs; using %d", threads, cpus, cpus)
        torch.set_num_threads(cpus)
        threads = cpus
    return threads


def current_policy() -> ThreadPolicy:
    """The thread policy in effect (for ``colmax info`` and benchmark reports)."""
    import torch

    chosen = os.environ.get(WAIT_POLICY_ENV, "")
    return ThreadPolicy(
        wait_policy=chosen,
        passive=_is_passive(),
        threads=torch.get_num_threads(),
        usable_cpus=usable_cpus(),
    )
