"""CPU training speed on an idle machine and with one core kept busy by another process.

    python scripts/bench_cpu_load.py [--repeats 3] [--size 64] [--blocks 6] [--images 20]
                                     [--json out.json]

Runs `cyclegan train` (two epochs on a small synthetic pair, in a process of its own) under each
thread setting, first on the machine as it is, then with one busy-looping process beside it, and
reports the time per iteration of the second epoch (from metrics.jsonl: start-up and the first
epoch's warm-up left out; data loading included): median, min and max over the repeats, loaded /
idle per setting, and idle / the plain eager step: `python -m cyclegan bench`'s eager fp32 batch-1
step of the same networks with torch's defaults (`plain eager`, run beside the settings on the
idle machine). Settings:

- `torch`: torch's defaults (one OpenMP thread per core, libgomp's spinning wait), the CLI's
  own thread settings bypassed (cyclegan.commands.main called directly);
- `1 thread`: OMP_NUM_THREADS=1, the same bypass;
- `passive`: OMP_WAIT_POLICY=PASSIVE with one thread per core, the same bypass;
- `cli`: `python -m cyclegan train` as users run it (its chosen settings, cyclegan/threads.py:
  one thread per idle core, the passive wait only where a core is busy, data-loading processes at
  most one per core beside it);
- `cli, no loaders`: the same with `--num_threads 0` (images loaded in the training process).

Every setting loads data as the CLI does (`--num_threads` 4, capped to cores - 1).

Other processes on the machine disturb the figures: run it on a quiet machine, and read the spread.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

THREAD_VARS = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OMP_WAIT_POLICY",
    "KMP_BLOCKTIME",
    "GOMP_SPINCOUNT",
)
BYPASS = "import sys; from cyclegan.commands import main; sys.exit(main(sys.argv[1:]))"
CORES = str(os.cpu_count() or 1)
PLAIN = "plain eager"
SETTINGS = {  # name: (environment, how the CLI is entered, extra train flags)
    "torch": ({}, ["-c", BYPASS], []),
    "1 thread": ({"OMP_NUM_THREADS": "1"}, ["-c", BYPASS], []),
    "passive": ({"OMP_WAIT_POLICY": "PASSIVE", "OMP_NUM_THREADS": CORES}, ["-c", BYPASS], []),
    "cli": ({}, ["-m", "cyclegan"], []),
    "cli, no loaders": ({}, ["-m", "cyclegan"], ["--num_threads", "0"]),
}


def _busy_core() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "while True: pass"])


def _env(extra: dict[str, str]) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in THREAD_VARS}
    return env | extra


def plain_ms(out: Path, size: int, ngf: int, blocks: int, iters: int) -> float:
    """`cyclegan bench`'s eager fp32 batch-1 step, torch's thread defaults (the CLI's bypassed)."""
    report = out / f"plain-{time.monotonic_ns()}.json"
    args = ["bench", "--size", str(size), "--blocks", str(blocks), "--ngf", str(ngf)]
    args += ["--ndf", str(ngf), "--batch", "1", "--configs", "eager-fp32", "--iters", str(iters)]
    args += ["--warmup", "3", "--device", "cpu", "--json", str(report)]
    out.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        [sys.executable, "-c", BYPASS, *args], env=_env({}), check=True, capture_output=True
    )
    return json.loads(report.read_text())["configs"][0]["ms_per_iter"]


def train_ms(setting: str, data: Path, out: Path, size: int, ngf: int, blocks: int) -> float:
    """Milliseconds per iteration of the second epoch of a two-epoch run."""
    extra, entry, flags = SETTINGS[setting]
    name = f"run-{time.monotonic_ns()}"
    args = [
        "train",
        "--dataroot",
        str(data),
        "--checkpoints_dir",
        str(out),
        "--name",
        name,
        "--netG",
        f"resnet_{blocks}blocks",
        "--ngf",
        str(ngf),
        "--ndf",
        str(ngf),
        "--load_size",
        str(size),
        "--crop_size",
        str(size),
        "--n_epochs",
        "2",
        "--n_epochs_decay",
        "0",
        "--device",
        "cpu",
        "--n_samples",
        "1",
        "--print_freq",
        "1000",
        *flags,
    ]
    subprocess.run(
        [sys.executable, *entry, *args], env=_env(extra), check=True, capture_output=True
    )
    rows = [
        json.loads(line)
        for line in (out / name / "metrics.jsonl").read_text().splitlines()
        if '"epoch_time_s"' in line
    ]
    return rows[-1]["epoch_time_s"] / rows[-1]["iterations"] * 1e3


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--ngf", type=int, default=16)
    parser.add_argument("--blocks", type=int, default=6)
    parser.add_argument(
        "--images", type=int, default=20, help="training images per domain (one epoch)"
    )
    parser.add_argument(
        "--settings", default=";".join(SETTINGS), help="the settings to run, separated by ;"
    )
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    from cyclegan.sources.synthetic import generate

    settings = [s.strip() for s in args.settings.split(";")]
    with tempfile.TemporaryDirectory() as tmp:
        data = generate(
            "colorshift", Path(tmp) / "data", n_train=args.images, n_test=2, size=args.size, seed=0
        )
        times: dict[tuple[str, str], list[float]] = {}
        for load in ("idle", "one core busy"):
            busy = _busy_core() if load != "idle" else None
            try:
                for _ in range(
                    args.repeats
                ):  # interleaved: a change of load hits every setting alike
                    # the plain step only idle: with a busy core, torch's defaults are `torch`
                    for setting in ([PLAIN] if busy is None else []) + settings:
                        shape = (Path(tmp) / "out", args.size, args.ngf, args.blocks)
                        t = (
                            plain_ms(*shape, iters=args.images)
                            if setting == PLAIN
                            else train_ms(setting, data, *shape)
                        )
                        times.setdefault((setting, load), []).append(t)
                        print(f"{setting:>24} {load:>14}: {t:7.1f} ms", flush=True)
            finally:
                if busy is not None:
                    busy.kill()
                    busy.wait()
    print(
        f"\n{os.cpu_count()} cores; {args.images} pairs of {args.size}x{args.size}, "
        f"resnet_{args.blocks}blocks, ngf {args.ngf}; "
        f"{args.repeats} repeats (median [min-max] ms per iteration)"
    )
    print(f"{'setting':>24}  {'idle':>22}  {'one core busy':>22}  loaded/idle  idle/plain")
    summary: dict = {PLAIN: {"idle_ms": times[(PLAIN, "idle")]}}
    plain_idle = statistics.median(times[(PLAIN, "idle")])
    print(f"{PLAIN:>24}  {plain_idle:7.1f} ms")
    for setting in settings:
        idle, loaded = times[(setting, "idle")], times[(setting, "one core busy")]
        ratio = statistics.median(loaded) / statistics.median(idle)
        to_plain = statistics.median(idle) / plain_idle
        cells = [f"{statistics.median(v):7.1f} [{min(v):.0f}-{max(v):.0f}]" for v in (idle, loaded)]
        print(f"{setting:>24}  {cells[0]:>22}  {cells[1]:>22}  {ratio:10.2f}x  {to_plain:9.2f}x")
        summary[setting] = {
            "idle_ms": idle,
            "loaded_ms": loaded,
            "loaded_over_idle": ratio,
            "idle_over_plain": to_plain,
        }
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
