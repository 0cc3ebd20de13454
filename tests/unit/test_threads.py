"""The CLIs' CPU thread settings for a shared machine (cyclegan.threads): one torch thread per idle
core, a passive OpenMP wait only where a core is busy (torch's own wait on an idle machine: the
passive one made the idle step 2.4x slower), at most one data-loading process per core beside the
training process; whatever the user set wins. (Their effect on speed is measured by
scripts/bench_cpu_load.py, not here.)"""

from __future__ import annotations

import os
import sys

import cyclegan.threads as threads


def test_an_idle_machine_keeps_torchs_wait_and_gets_a_thread_per_core(monkeypatch):
    monkeypatch.setattr(threads, "usable_cores", lambda: 2)
    monkeypatch.setattr(threads, "idle_cores", lambda: 2)
    assert threads.configure_cpu_threads({}) == {"OMP_NUM_THREADS": "2"}


def test_a_busy_core_gets_no_thread_and_the_others_wait_passively_unless_the_user_chose(
    monkeypatch,
):
    monkeypatch.setattr(threads, "usable_cores", lambda: 2)
    monkeypatch.setattr(threads, "idle_cores", lambda: 1)
    env: dict[str, str] = {}
    assert threads.configure_cpu_threads(env) == {
        "OMP_WAIT_POLICY": "PASSIVE",
        "KMP_BLOCKTIME": "0",
        "OMP_NUM_THREADS": "1",
    }
    assert env["OMP_WAIT_POLICY"] == "PASSIVE"
    mine = {"OMP_WAIT_POLICY": "ACTIVE", "OMP_NUM_THREADS": "8"}
    assert threads.configure_cpu_threads(mine) == {"KMP_BLOCKTIME": "0"}
    assert mine["OMP_WAIT_POLICY"] == "ACTIVE" and mine["OMP_NUM_THREADS"] == "8"


def test_the_orchestrator_always_waits_passively_and_leaves_thread_counts_to_ray(monkeypatch):
    monkeypatch.setattr(threads, "idle_cores", lambda: 2)
    monkeypatch.setattr(threads, "usable_cores", lambda: 2)
    assert threads.configure_cpu_threads({}, threads=False) == {
        "OMP_WAIT_POLICY": "PASSIVE",
        "KMP_BLOCKTIME": "0",
    }  # its Ray workers share the machine with each other; Ray sets their OMP_NUM_THREADS


def test_idle_cores_leaves_out_the_cores_other_processes_keep_busy(monkeypatch):
    monkeypatch.setattr(threads, "usable_cores", lambda: 4)
    monkeypatch.setattr(threads.os, "cpu_count", lambda: 4)
    for busy_share, idle in (
        (0.0, 4),
        (0.25, 3),
        (0.55, 2),
        (1.0, 1),
    ):  # never fewer than one thread
        samples = iter([(0.0, 0.0), (busy_share * 100, 100.0)])
        monkeypatch.setattr(threads, "_cpu_times", samples.__next__)
        assert threads.idle_cores(sample_s=0) == idle, busy_share
    monkeypatch.setattr(threads, "_cpu_times", lambda: None)  # no /proc/stat: every core
    assert threads.idle_cores(sample_s=0) == 4


def test_data_loading_processes_only_take_cores_the_training_step_leaves_free():
    assert threads.loader_workers(4, cores=2) == 1  # a GPU step: one core for the main process
    assert threads.loader_workers(4, cores=16) == 4
    assert threads.loader_workers(0, cores=16) == 0 and threads.loader_workers(4, cores=1) == 0
    # A CPU step on every core of an idle 2-core machine: images are loaded in its process.
    assert threads.loader_workers(4, cores=2, step_threads=2) == 0
    assert threads.loader_workers(4, cores=2, step_threads=1) == 1  # one core busy: one thread
    assert threads.loader_workers(4, cores=16, step_threads=14) == 2


def test_the_cyclegan_command_sets_them_before_torch_is_imported(tmp_path):
    import subprocess

    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("OMP_WAIT_POLICY", "KMP_BLOCKTIME", "OMP_NUM_THREADS")
    }
    code = (  # one core of two busy, whatever the machine running the test is doing
        "import cyclegan.threads as t; t.usable_cores = lambda: 2; t.idle_cores = lambda: 1\n"
        "import os, sys, runpy; sys.argv = ['cyclegan', 'synth', '--out', sys.argv[1], "
        "'--n-train', '1', '--n-test', '1', "
        "'--size', '16']\ntry:\n    runpy.run_module('cyclegan', run_name='__main__')\nexcept "
        "SystemExit:\n    pass\n"
        "import torch; print(os.environ['OMP_WAIT_POLICY'], torch.get_num_threads() == "
        "int(os.environ['OMP_NUM_THREADS']))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "synth")],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.split()[-2:] == ["PASSIVE", "True"], out.stdout
