"""CPU threads of the processes this project starts (the CLIs), chosen for a machine that others
may share.

OpenMP's default wait (libgomp spins a while at every barrier before it sleeps) is the fastest on an
idle machine, but when another process keeps one core busy, the thread that shares that core holds
every parallel region up while the others spin against it: `cyclegan train` on CPU ran 6-16x slower.
A passive wait (a waiting thread sleeps at once and gives its core back) avoids that, but costs a
wake-up at every parallel region: on an idle machine it made the step 2.4x the plain eager one. So
`python -m cyclegan` looks at the machine when it starts (the busy share of the cores over 0.1 s):
(1) one torch thread per idle core, at least one (a core another process keeps busy gets no thread
of ours), and (2) the passive wait only where some core is busy; on an idle machine torch's own
settings (a load that comes later meets the spinning wait). `python -m orchestrator` always waits
passively: its Ray workers share the machine with each other. docs/PERFORMANCE.md, "CPU threads on a
shared machine", has the figures; the benchmark is scripts/bench_cpu_load.py.

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
    """With `threads` (the cyclegan CLI): OMP_NUM_THREADS = the idle cores, and the passive wait
    only where a core is busy; without (the orchestrator): the passive wait. Only what the user has
    not chosen; returns what was set."""
    idle = idle_cores() if threads else 0
    chosen = {}
    if threads and "OMP_NUM_THREADS" not in environ:
        chosen["OMP_NUM_THREADS"] = str(idle)
    if idle < usable_cores():
        chosen.update({key: value for key, value in WAIT_SETTINGS.items() if key not in environ})
    environ.update(chosen)
    return chosen


def loader_workers(requested: int, cores: int | None = None, step_threads: int = 1) -> int:
    """Data-loading processes for `requested` (`--num_threads`): only on cores the training step
    leaves free (`step_threads`: its own, 1 when it runs on a GPU, torch's thread count on CPU), so
    that they never take the cores the step needs. On a 2-core machine training on CPU that is none:
    a loader process beside two torch threads made the step 1.14x the plain one (PERFORMANCE.md).
    (The reference's default, 4, was 4 processes on a 2-core machine.)"""
    cores = usable_cores() if cores is None else cores
    return max(0, min(requested, cores - max(1, step_threads)))
