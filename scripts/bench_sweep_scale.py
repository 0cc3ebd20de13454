"""What a sweep costs beside its training workers, as the number of tasks grows.

    python scripts/bench_sweep_scale.py --tasks 1 4 16 [--trials 1] [--epochs 2] [--interval 1]
        [--workers 1] [--memory-per-worker 0.5] [--json out.json] [--keep DIR] [--trace-torch]
    python scripts/bench_sweep_scale.py --tasks 1 10 25 50 --epochs 1 --run-concurrent-trials 8

For each N it writes a manifest of N tiny tasks (resnet_1blocks, ngf 8, 32x32, a few synthetic
images, metric cycle_l1, `--trials` trials each, CPUs per worker small enough that every trial fits
the machine at once, or `--run-concurrent-trials` of them: the manifest's top-level
`max_concurrent_trials`, which lets 50 tasks run through a machine that cannot hold 50 training
processes at once), runs `python -m orchestrator run` on it with a private local Ray (its own
RAY_TMPDIR), and samples every process of that run every `--interval` seconds: its title (Ray's
process titles name the actor or task), its proportional memory (Pss in /proc/PID/smaps_rollup, so
shared libraries such as libtorch count once across processes), its private memory (USS) and whether
it has libtorch mapped. The run's processes are the ones whose environment carries a marker this
script sets, and their descendants. A run is stopped after `--timeout` seconds, or when the
machine's available memory falls below `--min-available-mb` (a sweep too big for the machine).

Reported per N: the peak of the summed PSS of the driver side (every process of the run except the
training processes: Ray's node processes, the CLI driver with its Tune run, the progress actor, idle
workers, and Train controllers and helper actors where a trial has several workers), the same per
running trial, the peak of the training processes (the Tune trial processes: the benchmark's trials
have one worker each, so they train in their Tune trial process; Ray Train workers otherwise), the
peak process counts by kind, and each trial's time from the command's start to the end of its first
epoch (the MLflow timestamp of the epoch-1 metrics) and to the start of that epoch (minus the
epoch's own `epoch_wall_s`).

`--trace-torch` also records, in each process of the run, the Python stack at the moment torch is
first imported (a sitecustomize import hook on PYTHONPATH): which of our modules pulls torch in.

The figures depend on the machine and on what else runs on it: other processes disturb the times
(not the memory much). Peak memory is sampled, so a peak shorter than the interval can be missed.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
MARKER_VAR = "BENCH_SWEEP_SCALE_RUN"
TRIAL_KIND = "Tune trial (trains)"
DRIVING_TRIAL_KIND = "Tune trial (drives a Train run)"
TRIALS_TRAIN = True  # --workers 1: a trial trains in its Tune trial process (set by main)
# A process that trains at some point is a training process all its life: Ray starts it as ray::IDLE
# before it takes its trial, and it turns ray::IDLE again as it exits.
AROUND_KIND = "training process, before or after its trial"
TINY_TRAIN = (
    "{netG: resnet_1blocks, ngf: 8, ndf: 8, load_size: 32, crop_size: 32, num_threads: 0, "
    "n_epochs: %d, n_epochs_decay: 0, n_samples: 1}"
)

# Process kinds, by title (first match wins), and which group each belongs to:
# "worker" = a training worker; "run" = scales with tasks and trials; "node" = Ray's own per-node
# processes.
KINDS = [
    ("ray::RayTrainWorker", "Train worker", "worker"),
    (
        "ray::ImplicitFunc",
        TRIAL_KIND,
        "worker",
    ),  # a one-worker trial trains in its Tune trial process
    ("ray::TrainController", "Train controller", "run"),
    ("ray::PlacementGroupCleaner", "PlacementGroupCleaner", "run"),
    ("ray::DatasetManager", "DatasetManager", "run"),
    ("ray::SynchronizationActor", "SynchronizationActor", "run"),
    ("ray::PreemptionWatcher", "PreemptionWatcher", "run"),
    ("ray::_QueueActor", "_QueueActor", "run"),
    ("ray::TrainStateActor", "TrainStateActor", "node"),
    (
        "ray::_AutoscalingCoordinatorActor",
        "AutoscalingCoordinator",
        "node",
    ),  # one per cluster (detached)
    ("ray::DashboardAgent", "dashboard agent", "node"),
    ("ray::RuntimeEnvAgent", "runtime env agent", "node"),
    ("ray::ProgressBoard", "ProgressBoard", "node"),
    ("ray::IDLE", "idle worker", "node"),
    ("gcs_server", "gcs_server", "node"),
    ("ray/raylet/raylet", "raylet", "node"),
    ("dashboard/agent.py", "dashboard agent", "node"),
    ("runtime_env/agent/main.py", "runtime env agent", "node"),
    ("dashboard/dashboard.py", "dashboard", "node"),
    ("dashboard/subprocesses", "dashboard module", "node"),
    ("log_monitor.py", "log monitor", "node"),
    ("autoscaler/_private/monitor.py", "autoscaler monitor", "node"),
    ("-m orchestrator", "CLI driver", "node"),
    ("multiprocessing.forkserver", "dashboard forkserver and its module processes", "node"),
    ("ray/_private/workers/default_worker.py", "starting worker", "node"),
    ("ray/_private/workers/setup_worker.py", "starting worker", "node"),
    ("multiprocessing.resource_tracker", "resource tracker", "node"),
]

TORCH_HOOK = '''
import os, sys, time, traceback
from importlib.machinery import PathFinder

class _FirstTorchImport:
    """Records when and from where this process first imports torch (the stack), and when that import ends."""
    def find_spec(self, name, path=None, target=None):
        if name != "torch":
            return None
        sys.meta_path.remove(self)
        spec = PathFinder.find_spec(name, path)
        try:
            frames = [f for f in traceback.format_stack()[:-1] if "<frozen importlib" not in f]
            title = open("/proc/self/cmdline", "rb").read().replace(b"\\0", b" ").decode(errors="replace")
            out_path = os.path.join(%r, "%%d.txt" %% os.getpid())
            with open(out_path, "w") as out:
                out.write("%%.3f\\n%%s\\n" %% (time.time(), title.strip()))
                out.writelines(frames)
            load = spec.loader.exec_module

            def timed(module):
                load(module)
                with open(out_path + ".end", "w") as end:
                    end.write("%%.3f" %% time.time())
            spec.loader.exec_module = timed
        except Exception:
            pass
        return spec

sys.meta_path.insert(0, _FirstTorchImport())
'''  # noqa: E501 (a script run in another process: its lines are kept as they run)


def classify(title: str) -> tuple[str, str]:
    if not TRIALS_TRAIN and "ray::ImplicitFunc" in title:
        return DRIVING_TRIAL_KIND, "run"
    for needle, kind, group in KINDS:
        if needle in title:
            return kind, group
    if title.startswith("ray::"):
        return title.split()[0].split(".")[0], "run"
    return "other: " + title[:60], "node"


def _read(path: str, mode: str = "r"):
    try:
        with open(path, mode) as f:
            return f.read()
    except OSError:
        return None


def memory_kb(pid: int) -> tuple[int, int] | None:
    """(PSS, USS) in kB: the proportional share, and the private part (what ending it frees)."""
    text = _read(f"/proc/{pid}/smaps_rollup")
    if not text:
        return None
    fields = {
        line.split(":")[0]: int(line.split()[1])
        for line in text.splitlines()[1:]
        if line.endswith("kB")
    }
    return fields.get("Pss", 0), fields.get("Private_Clean", 0) + fields.get("Private_Dirty", 0)


def has_torch(pid: int) -> bool:
    maps = _read(f"/proc/{pid}/maps")
    return bool(maps) and "libtorch_cpu" in maps


def mem_available_kb() -> int:
    for line in (_read("/proc/meminfo") or "").splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1])
    return 0


@dataclass
class ProcessSeen:
    pid: int
    titles: list[tuple[float, str]] = field(default_factory=list)  # (seconds since start, title)
    torch_at: float | None = None
    peak_pss_kb: int = 0
    peak_uss_kb: int = 0
    ppid: int = 0
    first: float = 0.0
    last: float = 0.0


class Sampler(threading.Thread):
    """Samples the run's processes every `interval` seconds until stopped."""

    def __init__(self, marker: bytes, interval: float, t0: float):
        super().__init__(daemon=True)
        self.marker, self.interval, self.t0 = marker, interval, t0
        self.stop = threading.Event()
        self.ours: dict[tuple[int, str], bool] = {}  # (pid, start time) -> is it this run's
        self.seen: dict[tuple[int, str], ProcessSeen] = {}
        self.samples: list[dict] = []
        self.idle_available_kb = mem_available_kb()
        self.min_available_kb = self.idle_available_kb

    def _run_pids(self) -> list[tuple[int, str]]:
        """This run's processes: those whose environment carries the marker, and their descendants
        (a process whose environment Ray rebuilt without it)."""
        parents, current, unknown = {}, [], []
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            stat = _read(f"/proc/{name}/stat")
            if not stat:
                continue
            fields = stat.rsplit(")", 1)[-1].split()
            key = (int(name), fields[19])  # field 22: the start time
            parents[key[0]] = int(fields[1])
            current.append(key)
            if key not in self.ours:
                environ = _read(f"/proc/{name}/environ", "rb")
                if environ is None:  # gone
                    continue
                if self.marker in environ:
                    self.ours[key] = True
                else:
                    unknown.append(key)
        ours = {pid for (pid, _), mine in self.ours.items() if mine}
        for key in unknown:  # a descendant of one of ours is ours
            pid, seen = key[0], set()
            while pid > 1 and pid not in ours and pid not in seen:
                seen.add(pid)
                pid = parents.get(pid, 0)
            self.ours[key] = pid in ours
        return [key for key in current if self.ours.get(key)]

    def sample(self) -> None:
        now = time.monotonic() - self.t0
        rows = []
        for key in self._run_pids():
            pid = key[0]
            raw = _read(f"/proc/{pid}/cmdline", "rb")
            memory = memory_kb(pid)
            if not raw or memory is None:
                continue
            pss, uss = memory
            title = raw.replace(b"\0", b" ").decode(errors="replace").strip()
            seen = self.seen.setdefault(key, ProcessSeen(pid, first=now))
            if not seen.titles or seen.titles[-1][1] != title:
                seen.titles.append((round(now, 2), title))
            if seen.torch_at is None and has_torch(pid):
                seen.torch_at = round(now, 2)
            seen.peak_pss_kb = max(seen.peak_pss_kb, pss)
            seen.peak_uss_kb = max(seen.peak_uss_kb, uss)
            seen.ppid = int((_read(f"/proc/{pid}/stat") or ") ? 0").rsplit(")", 1)[-1].split()[1])
            seen.last = now
            kind, group = classify(title)
            rows.append(
                {
                    "pid": pid,
                    "kind": kind,
                    "group": group,
                    "pss_kb": pss,
                    "uss_kb": uss,
                    "torch": seen.torch_at is not None,
                }
            )
        self.min_available_kb = min(self.min_available_kb, mem_available_kb())
        self.samples.append({"t": round(now, 2), "processes": rows})

    def run(self) -> None:
        while not self.stop.is_set():
            started = time.monotonic()
            self.sample()
            self.stop.wait(max(0.0, self.interval - (time.monotonic() - started)))


def end_leftovers(sampler: Sampler, grace_s: float = 10.0) -> None:
    """Kill what is left of this run's processes (only they carry its marker) once the grace time is
    up."""
    deadline = time.monotonic() + grace_s
    while (left := sampler._run_pids()) and time.monotonic() < deadline:
        time.sleep(0.5)
    for pid, _ in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except OSError:
            pass


def write_manifest(
    folder: Path,
    name: str,
    tasks: int,
    trials: int,
    epochs: int,
    cpus: float,
    concurrent: int | None,
    memory_gib: float,
    workers: int = 1,
    run_concurrent: int | None = None,
) -> Path:
    lines = [
        f"name: {name}",
        *([f"max_concurrent_trials: {run_concurrent}"] if run_concurrent else []),
        f"tracking: {{uri: 'sqlite:///{folder}/mlflow.db'}}",
        "defaults:",
        f"  train: {TINY_TRAIN % epochs}",
        f"  resources: {{workers: {workers}, cpus_per_worker: {cpus:g}, memory_per_worker: "
        f"{memory_gib:g}}}",
        "search:",
        f"  num_samples: {trials}",
        "  space: {lambda_cyc: {choice: [5, 10]}}",
        "  metric: cycle_l1",
        "  baseline: false",  # exactly --trials trials per task, as the measurements were taken
        "  max_failures: 0",
    ]
    if concurrent:
        lines.append(f"  max_concurrent_trials: {concurrent}")
    lines.append("tasks:")
    for i in range(tasks):
        lines.append(
            f"  - {{name: t{i:02d}, data: 'synthetic://colorshift?size=32&n_train=8&n_test=2&seed={i}'}}"
        )
    path = folder / "manifest.yaml"
    path.write_text("\n".join(lines) + "\n")
    return path


def first_epochs(db: Path) -> list[dict]:
    """Per trial run: its task, the epoch-1 metrics' timestamp (ms) and that epoch's own seconds."""
    if not db.is_file():
        return []
    with sqlite3.connect(db) as con:
        rows = con.execute(
            textwrap.dedent("""\
            SELECT parent.name, trial.value, m.timestamp, m.value
            FROM metrics m
            JOIN tags trial ON trial.run_uuid = m.run_uuid AND trial.key = 'trial'
            JOIN tags p ON p.run_uuid = m.run_uuid AND p.key = 'mlflow.parentRunId'
            JOIN runs parent ON parent.run_uuid = p.value
            WHERE m.key = 'epoch_wall_s' AND m.step = 1""")
        ).fetchall()
    return [
        {"task": task, "trial": trial, "first_epoch_end_ms": ts, "epoch_s": value}
        for task, trial, ts, value in rows
    ]


def torch_stacks(folder: Path, seen: dict) -> list[dict]:
    """The first-torch-import stacks the hook wrote, with the process's last title."""
    titles = {s.pid: s.titles[-1][1] for s in seen.values() if s.titles}
    out = []
    for path in sorted(folder.glob("*.txt")):
        lines = path.read_text().splitlines()
        pid = int(path.stem)
        if len(lines) < 2:
            continue
        own = [
            line.strip()
            for line in lines[2:]
            if "/work/" in line
            and "site-packages" not in line
            or line.strip().startswith(("from ", "import "))
        ]
        end = path.with_suffix(".txt.end")
        out.append(
            {
                "pid": pid,
                "title_then": lines[1],
                "title_last": titles.get(pid, "?"),
                "started": float(lines[0]),
                "seconds": round(float(end.read_text()) - float(lines[0]), 2)
                if end.is_file()
                else None,
                "stack": lines[2:],
                "lines": own,
            }
        )
    return out


def run_once(tasks: int, args: argparse.Namespace, keep: Path | None) -> dict:
    base = Path(
        tempfile.mkdtemp(prefix="bss-", dir="/tmp")
    )  # short: Ray's socket paths must stay < 108 bytes
    running = min(tasks * args.trials, args.run_concurrent_trials or tasks * args.trials)
    cpus = args.cpus_per_worker or max(
        0.05, round(min(0.5, (os.cpu_count() or 2) * 0.9 / (running * args.workers)), 2)
    )
    manifest = write_manifest(
        base,
        f"scale{tasks}",
        tasks,
        args.trials,
        args.epochs,
        cpus,
        args.max_concurrent_trials,
        args.memory_per_worker,
        args.workers,
        args.run_concurrent_trials,
    )
    marker = uuid.uuid4().hex
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAY_ADDRESS")}
    pythonpath = [str(REPO)]
    if args.trace_torch:
        hook = base / "hook"
        (hook / "stacks").mkdir(parents=True)
        (hook / "sitecustomize.py").write_text(TORCH_HOOK % str(hook / "stacks"))
        pythonpath.insert(0, str(hook))
    env.update(
        {
            MARKER_VAR: marker,
            "RAY_TMPDIR": str(base / "ray"),
            "CYCLEGAN_CACHE_DIR": str(base / "cache"),
            "PYTHONPATH": os.pathsep.join(pythonpath + [p for p in [env.get("PYTHONPATH")] if p]),
            "RAY_AUTH_MODE": "disabled",
            "MLFLOW_DISABLE_TELEMETRY": "true",
        }
    )
    (base / "ray").mkdir()
    command = [
        sys.executable,
        "-m",
        "orchestrator",
        "run",
        str(manifest),
        "--storage",
        str(base / "runs"),
        "--results-dir",
        str(base / "results"),
        "--offline",
    ]
    print(
        f"[{tasks} task(s) x {args.trials} trial(s), {cpus:g} CPU per worker] {' '.join(command)}",
        flush=True,
    )
    t0 = time.monotonic()
    wall0 = time.time()
    sampler = Sampler(marker.encode(), args.interval, t0)
    sampler.start()
    stopped = None
    with open(base / "stdout.txt", "w") as out:
        proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
        while proc.poll() is None and stopped is None:
            time.sleep(0.5)
            if time.monotonic() - t0 > args.timeout:
                stopped = f"timeout ({args.timeout:g} s)"
            elif mem_available_kb() < args.min_available_mb * 1024:
                stopped = f"the machine's available memory fell below {args.min_available_mb} MB"
        if stopped:
            print(f"  stopping the run: {stopped}", flush=True)
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
        code = proc.wait()
    wall = time.monotonic() - t0
    sampler.stop.set()
    sampler.join()
    end_leftovers(sampler)
    report = summarize(tasks, args.trials, cpus, sampler, code, wall, wall0, base)
    report["stopped"] = stopped
    if args.trace_torch:
        report["torch_stacks"] = torch_stacks(base / "hook" / "stacks", sampler.seen)
    report["stdout_tail"] = (base / "stdout.txt").read_text()[-3000:]
    if keep:
        target = keep / f"tasks{tasks}"
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(
            base, target, symlinks=True, ignore=shutil.ignore_patterns("sockets", "*.sock")
        )
    shutil.rmtree(base, ignore_errors=True)
    return report


def summarize(
    tasks: int,
    trials: int,
    cpus: float,
    sampler: Sampler,
    code: int,
    wall: float,
    wall0: float,
    base: Path,
) -> dict:
    mb = 1 / 1024
    peak = {
        "driver_side": 0.0,
        "driver_side_uss": 0.0,
        "run": 0.0,
        "node": 0.0,
        "worker": 0.0,
        "processes": 0,
        "trials": 0,
        "per_trial": 0.0,
    }
    kinds: dict[str, dict] = {}
    by_sample: list[tuple[int, float]] = []  # (trials running, driver side MB)
    trains = {
        seen.pid
        for seen in sampler.seen.values()
        if any(classify(title)[1] == "worker" for _, title in seen.titles)
    }
    for sample in sampler.samples:
        for row in sample["processes"]:
            if row["pid"] in trains and row["group"] != "worker":
                row["kind"], row["group"] = AROUND_KIND, "worker"
        groups = {"run": 0.0, "node": 0.0, "worker": 0.0}
        uss = 0.0
        by_kind: dict[str, list[dict]] = {}
        for row in sample["processes"]:
            groups[row["group"]] += row["pss_kb"] * mb
            uss += row["uss_kb"] * mb if row["group"] != "worker" else 0
            by_kind.setdefault(row["kind"], []).append(row)
        running = len(by_kind.get(TRIAL_KIND if TRIALS_TRAIN else DRIVING_TRIAL_KIND, []))
        driver_side = groups["run"] + groups["node"]
        peak.update(
            driver_side=max(peak["driver_side"], driver_side),
            driver_side_uss=max(peak["driver_side_uss"], uss),
            processes=max(peak["processes"], len(sample["processes"])),
            trials=max(peak["trials"], running),
            **{g: max(peak[g], v) for g, v in groups.items()},
        )
        by_sample.append((running, driver_side))
        for kind, rows in by_kind.items():
            k = kinds.setdefault(
                kind,
                {
                    "group": classify_group(kind),
                    "peak_count": 0,
                    "peak_sum_mb": 0.0,
                    "max_one_mb": 0.0,
                    "max_one_uss_mb": 0.0,
                    "processes": 0,
                    "with_torch": 0,
                },
            )
            k["peak_count"] = max(k["peak_count"], len(rows))
            k["peak_sum_mb"] = max(k["peak_sum_mb"], sum(r["pss_kb"] for r in rows) * mb)
            k["max_one_mb"] = max(k["max_one_mb"], max(r["pss_kb"] for r in rows) * mb)
            k["max_one_uss_mb"] = max(k["max_one_uss_mb"], max(r["uss_kb"] for r in rows) * mb)
    if peak["trials"]:  # while the most trials ran at once
        peak["per_trial"] = (
            max(side for running, side in by_sample if running == peak["trials"]) / peak["trials"]
        )
    for seen in (
        sampler.seen.values()
    ):  # processes of each kind they ever were, and those with libtorch by then
        ends = [t for t, _ in seen.titles[1:]] + [seen.last]
        last_end: dict[str, float] = {}
        for (_, title), end in zip(seen.titles, ends):
            last_end[classify(title)[0]] = end
        for kind, end in last_end.items():
            if seen.pid in trains and classify_group(kind) != "worker":
                kind = AROUND_KIND
            if kind in kinds:
                kinds[kind]["processes"] += 1
                kinds[kind]["with_torch"] += seen.torch_at is not None and seen.torch_at <= end
    epochs = first_epochs(base / "mlflow.db")
    for row in epochs:
        row["first_epoch_end_s"] = round(row["first_epoch_end_ms"] / 1000 - wall0, 2)
        row["first_epoch_start_s"] = round(row["first_epoch_end_s"] - row["epoch_s"], 2)
    # Each trial's start-up: from its Tune trial process taking the trial to its first epoch (the
    # n-th trial process to start paired with the n-th first epoch to start).
    trial_up = sorted(
        next(t for t, title in s.titles if "ray::ImplicitFunc" in title)
        for s in sampler.seen.values()
        if any("ray::ImplicitFunc" in title for _, title in s.titles)
    )
    startup = [
        round(e - t, 2) for t, e in zip(trial_up, sorted(r["first_epoch_start_s"] for r in epochs))
    ]
    return {
        "tasks": tasks,
        "trials_per_task": trials,
        "cpus_per_worker": cpus,
        "exit_code": code,
        "wall_s": round(wall, 1),
        "started_at": wall0,
        "peak_mb": {k: round(v, 1) if isinstance(v, float) else v for k, v in peak.items()},
        "machine_used_above_idle_mb": round(
            (sampler.idle_available_kb - sampler.min_available_kb) * mb, 1
        ),
        "kinds": {
            k: {kk: round(vv, 1) if isinstance(vv, float) else vv for kk, vv in v.items()}
            for k, v in sorted(kinds.items())
        },
        "first_epochs": sorted(epochs, key=lambda r: r["first_epoch_end_s"]),
        "trial_startup_s": startup,
        "samples": [
            {
                "t": x["t"],
                "processes": [[r["kind"], r["pss_kb"], r["uss_kb"]] for r in x["processes"]],
            }
            for x in sampler.samples
        ],
        "processes": [
            {
                "pid": s.pid,
                "ppid": s.ppid,
                "titles": s.titles,
                "torch_at": s.torch_at,
                "peak_pss_mb": round(s.peak_pss_kb * mb, 1),
                "peak_uss_mb": round(s.peak_uss_kb * mb, 1),
                "first_s": round(s.first, 2),
                "last_s": round(s.last, 2),
            }
            for s in sampler.seen.values()
        ],
    }


def classify_group(kind: str) -> str:
    if kind == AROUND_KIND:
        return "worker"
    if kind == DRIVING_TRIAL_KIND:
        return "run"
    return next(
        (group for _, k, group in KINDS if k == kind), "run" if kind.startswith("ray::") else "node"
    )


def markdown(reports: list[dict]) -> str:
    lines = [
        "| tasks × trials | exit | wall s | peak procs | peak trials running | driver side MB (run "
        "actors + node) | "
        "driver side USS MB | driver side MB per running trial (while the most run) | run actors "
        "MB per running trial | "
        "training workers MB | "
        "first epoch starts, s (median / max) | first epoch ends, s (median / max) | trial process "
        "to first epoch, s (median / max) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in reports:
        p = r["peak_mb"]
        starts = [e["first_epoch_start_s"] for e in r["first_epochs"]]
        ends = [e["first_epoch_end_s"] for e in r["first_epochs"]]

        def spread(values):
            return f"{statistics.median(values):.1f} / {max(values):.1f}" if values else "-"

        per_run = p["run"] / p["trials"] if p["trials"] else 0
        lines.append(
            f"| {r['tasks']} × {r['trials_per_task']} | "
            f"{r['exit_code']}{' (stopped)' if r.get('stopped') else ''} | {r['wall_s']:.0f} | "
            f"{p['processes']} | {p['trials']} | "
            f"{p['driver_side']:.0f} ({p['run']:.0f} + {p['node']:.0f}) | "
            f"{p['driver_side_uss']:.0f} | {p['per_trial']:.0f} | {per_run:.0f} | "
            f"{p['worker']:.0f} | {spread(starts)} | {spread(ends)} | "
            f"{spread(r.get('trial_startup_s', []))} |"
        )
    kinds = sorted({k for r in reports for k in r["kinds"]}, key=lambda k: (classify_group(k), k))
    header = " | ".join(
        f"{r['tasks']}×{r['trials_per_task']}: peak n / peak sum PSS / max one PSS / max one USS / "
        f"torch"
        for r in reports
    )
    lines += ["", f"| kind | group | {header} |", "| --- | --- |" + " --- |" * len(reports)]
    for kind in kinds:
        cells = []
        for r in reports:
            k = r["kinds"].get(kind)
            cells.append(
                f"{k['peak_count']} / {k['peak_sum_mb']:.0f} / {k['max_one_mb']:.0f} / "
                f"{k['max_one_uss_mb']:.0f} / "
                f"{k['with_torch']} of {k['processes']}"
                if k
                else "-"
            )
        lines.append(f"| {kind} | {classify_group(kind)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--tasks",
        type=int,
        nargs="+",
        default=[1, 4],
        help="the sweep sizes to run (tasks in the manifest)",
    )
    parser.add_argument("--trials", type=int, default=1, help="trials per task")
    parser.add_argument("--epochs", type=int, default=2, help="epochs per trial")
    parser.add_argument(
        "--cpus-per-worker",
        type=float,
        default=None,
        help=(
            "default: small enough that every trial fits this machine's cores at once (at most 0.5)"
        ),
    )
    parser.add_argument(
        "--max-concurrent-trials",
        type=int,
        default=None,
        help="the manifest's search.max_concurrent_trials",
    )
    parser.add_argument(
        "--run-concurrent-trials",
        type=int,
        default=None,
        help="the manifest's top-level max_concurrent_trials (all tasks together)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=1,
        help=(
            "DDP workers per trial: 1 trains in the Tune trial process; more make each trial a Ray "
            "Train run"
        ),
    )
    parser.add_argument(
        "--memory-per-worker",
        type=float,
        default=0.5,
        help=(
            "GiB each trial reserves (resources.memory_per_worker; a tiny trial's process takes "
            "about 0.7 GB)"
        ),
    )
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between samples")
    parser.add_argument(
        "--timeout", type=float, default=540, help="seconds before a run is stopped"
    )
    parser.add_argument(
        "--min-available-mb",
        type=int,
        default=3000,
        help=(
            "stop a run when the machine's available memory falls below this (a sweep too big for "
            "the machine)"
        ),
    )
    parser.add_argument(
        "--trace-torch",
        action="store_true",
        help="record the stack of each process's first `import torch`",
    )
    parser.add_argument("--json", default=None, help="write everything measured here")
    parser.add_argument(
        "--keep", default=None, help="copy each run's folder (Ray's logs, storage, MLflow) here"
    )
    args = parser.parse_args()
    global TRIALS_TRAIN
    TRIALS_TRAIN = args.workers == 1
    keep = Path(args.keep).resolve() if args.keep else None
    reports = []
    for tasks in args.tasks:
        report = run_once(tasks, args, keep)
        reports.append(report)
        print(
            f"  exit {report['exit_code']} after {report['wall_s']} s; peak driver side "
            f"{report['peak_mb']['driver_side']:.0f} MB, "
            f"training workers {report['peak_mb']['worker']:.0f} MB",
            flush=True,
        )
        if args.json:
            Path(args.json).write_text(json.dumps(reports, indent=1))
    print(
        f"\n{os.cpu_count()} cores; tiny tasks (resnet_1blocks, ngf 8, 32x32, 8 pairs, "
        f"{args.epochs} epochs); "
        f"sampled every {args.interval:g} s; PSS in MB (1 MB = 1024 kB)\n"
    )
    print(markdown(reports))
    return 0 if all(r["exit_code"] == 0 for r in reports) else 1


if __name__ == "__main__":
    raise SystemExit(main())
