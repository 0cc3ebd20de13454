"""CPU threads of the processes this project starts (the CLIs), chosen for a machine that others share.

OpenMP's default wait (libgomp spins a while at every barrier before it sleeps) costs nothing on an
idle machine, but when another process keeps one core busy, the thread that shares that core holds
every parallel region up while the others spin against it: `cyclegan train` on CPU ran 6-16x
slower. With a passive wait the waiting threads sleep at once and give the core back, and the run
keeps its idle speed (docs/PERFORMANCE.md, "CPU threads on a shared machine"; the benchmark is
scripts/bench_cpu_load.py).

Set before torch is imported (OpenMP reads these once, at its start); a value the user set wins.
Library users (`import cyclegan`) keep whatever their process has: only the command-line entry
points call this.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

# OMP_WAIT_POLICY is libgomp's (torch's OpenMP) and Intel's; KMP_BLOCKTIME is Intel OpenMP's (MKL).
WAIT_SETTINGS = {"OMP_WAIT_POLICY": "PASSIVE", "KMP_BLOCKTIME": "0"}


def configure_cpu_threads(environ: MutableMapping[str, str] = os.environ) -> dict[str, str]:
    """Set the passive OpenMP wait where the user has not chosen; returns what was set."""
    chosen = {key: value for key, value in WAIT_SETTINGS.items() if key not in environ}
    environ.update(chosen)
    return chosen


def loader_workers(requested: int, cores: int | None = None) -> int:
    """Data-loading processes for `requested` (`--num_threads`): at most one per core beside the
    training process, so that they never take the cores the training step needs (the reference's
    default, 4, is 4 processes on a 2-core machine)."""
    if cores is None:
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(0, min(requested, cores - 1))
