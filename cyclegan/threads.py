"""CPU threads of the processes this project starts (the CLIs), chosen for a machine that others
share.

OpenMP's default wait (libgomp spins a while at every barrier before it sleeps) costs nothing on an
idle machine, but when another process keeps one core busy, the thread that shares that core holds
every parallel region up while the others spin against it: `cyclegan train` on CPU ran 6-16x
slower. So the CLIs (1) wait passively (a waiting thread sleeps at once and gives its core back),
and (2) start with one torch thread per core that is idle when they start (a core another process
keeps busy gets no thread of ours), at least one. docs/PERFORMANCE.md, "CPU threads on a shared
machine", has the figures; the benchmark is scripts/bench_cpu_load.py.

Set before torch is imported (OpenMP reads these once, at its start); a value the user set wins.
Library users (`import cyclegan`) keep whatever their process has: only the command-line entry
points call this.
"""

from __future__ import annotations

import os
import time
from collections.abc import MutableMapping

# OMP_WAIT_POLICY is libgomp's (torch's OpenMP) and Intel's; KMP_BLOCKTIME is Intel OpenMP's (MKL).
WAIT_SETTINGS = {"OMP_WAIT_POLICY": "PASSIVE", "KMP_BLOCKTIME": "0"}


def usable_cores() -> int:
    return (
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    )


def _cpu_times() -> tuple[float, float] | None:
    """(busy, total) jiffies of all cores since boot, from /proc/stat; None where there is none."""
    try:
        with open("/proc/stat") as f:
            fields = [float(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields[:8]) - idle, sum(fields[:8])


def idle_cores(sample_s: float = 0.1) -> int:
    """How many of this process's cores are idle now: the machine's busy share over `sample_s`
    seconds (rounded), taken from the usable cores; all of them where it cannot be measured."""
    cores = usable_cores()
    before = _cpu_times()
    time.sleep(sample_s)
    after = _cpu_times()
    if before is None or after is None or after[1] <= before[1]:
        return cores
    busy_share = (after[0] - before[0]) / (after[1] - before[1])
    busy = round(busy_share * (os.cpu_count() or cores))
    return max(1, min(cores, cores - busy))


def configure_cpu_threads(
    environ: MutableMapping[str, str] = os.environ, threads: bool = True
) -> dict[str, str]:
    """Set the passive OpenMP wait and (with `threads`) OMP_NUM_THREADS to the idle cores, where
    the user has chosen neither; returns what was set."""
    chosen = {key: value for key, value in WAIT_SETTINGS.items() if key not in environ}
    if threads and "OMP_NUM_THREADS" not in environ:
        chosen["OMP_NUM_THREADS"] = str(idle_cores())
    environ.update(chosen)
    return chosen


def loader_workers(requested: int, cores: int | None = None) -> int:
    """Data-loading processes for `requested` (`--num_threads`): at most one per core beside the
    training process, so that they never take the cores the training step needs (the reference's
    default, 4, is 4 processes on a 2-core machine)."""
    cores = usable_cores() if cores is None else cores
    return max(0, min(requested, cores - 1))
