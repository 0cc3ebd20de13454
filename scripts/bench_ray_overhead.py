"""Measure what Ray Train adds to an epoch: one worker vs the plain `cyclegan` Trainer, same data.

    python scripts/bench_ray_overhead.py --rounds 3 --epochs 6 --n-train 32 --size 32

Both runs train the same configuration on the same data with the same threads. An epoch's wall
time runs from the start of one epoch's hooks to the next's: the training loop plus everything
around it (saving, sample grid, and under Ray the `ray.train.report` and checkpoint upload). The
epochs up to the first checkpoint are warm-up and left out. Rounds alternate which run goes first so
that a change in the machine's load hits both alike; the time outside the loop is also compared on
its own, since on a shared machine the loop's own speed drifts far more than Ray's costs. The
figures are in docs/PERFORMANCE.md ("Ray Train overhead").
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from cyclegan.commands.runner import run_cli
from cyclegan.config import TrainConfig
from cyclegan.run_files import METRICS_LOG
from cyclegan.sources.synthetic import generate
from cyclegan.trainer import Trainer


def bench_config(dataroot: Path, out: Path, args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(
        dataroot=str(dataroot),
        checkpoints_dir=str(out),
        name="bench",
        netG=args.netG,
        ngf=args.ngf,
        ndf=args.ndf,
        load_size=args.size,
        crop_size=args.size,
        n_epochs=args.epochs,
        n_epochs_decay=0,
        save_epoch_freq=args.save_every,
        num_threads=args.loader_workers,
        device="cpu",
        print_freq=10_000,
        n_samples=2,
        seed=0,
    )


@dataclass
class Timing:
    """One run's epochs `first+1..last`: wall seconds per epoch, and the part of it inside the
    training loop (`epoch_time_s`, the same code in both runs); the rest is what surrounds the
    loop (saving, sample grids, hooks, and under Ray the report and the checkpoint upload)."""

    epoch_s: float
    loop_s: float

    @property
    def around_s(self) -> float:
        return self.epoch_s - self.loop_s


def _timing(walls: dict[int, float], loops: dict[int, float], first: int, last: int) -> Timing:
    n = last - first
    # The wall mark of epoch e is taken as its hooks begin: [first, last) spans epochs
    # first+1..last.
    return Timing(
        (walls[last] - walls[first]) / n, sum(loops[e] for e in range(first + 1, last + 1)) / n
    )


def plain_timing(cfg: TrainConfig, threads: int, first: int, last: int) -> Timing:
    import torch

    torch.set_num_threads(threads)
    marks: dict[int, float] = {}
    trainer = Trainer(
        cfg,
        on_epoch_end=[lambda _t, epoch, _m: marks.__setitem__(epoch, time.perf_counter())],
        show_progress=False,
    )
    start = time.perf_counter()
    trainer.fit()
    loops = {int(m["epoch"]): float(m["epoch_time_s"]) for m in trainer.history}
    return _timing({e: t - start for e, t in marks.items()}, loops, first, last)


def ray_timing(
    cfg: TrainConfig, threads: int, storage: Path, name: str, first: int, last: int
) -> Timing:
    """Walls from the checkpoints' `train_wall_s`; loop times from rank 0's metrics.jsonl."""
    from orchestrator.config.resources import Resources
    from orchestrator.trial.ray_train import train_on_ray
    from orchestrator.trial.spec import TrialSpec

    result = train_on_ray(
        TrialSpec(
            cfg,
            Resources(workers=1, cpus_per_worker=threads),
            str(storage),
            name=name,
            keep_checkpoints=1000,
        )
    )
    walls = {
        int(m["epoch"]): float(m["train_wall_s"]) for _, m in result.ray_result.best_checkpoints
    }
    lines = (result.output_dir / METRICS_LOG).read_text().splitlines()
    loops = {int(m["epoch"]): float(m["epoch_time_s"]) for m in map(json.loads, lines)}
    return _timing(walls, loops, first, last)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="scripts/bench_ray_overhead.py", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("--rounds", type=int, default=3, help="plain / Ray pairs (default: 3)")
    parser.add_argument("--epochs", type=int, default=8, help="epochs per run (default: 8)")
    parser.add_argument(
        "--save-every", type=int, default=2, help="checkpoint every this many epochs (default: 2)"
    )
    parser.add_argument(
        "--n-train", type=int, default=64, help="synthetic training images per domain (default: 64)"
    )
    parser.add_argument("--size", type=int, default=64, help="image side (default: 64)")
    parser.add_argument("--netG", default="resnet_6blocks")
    parser.add_argument("--ngf", type=int, default=16)
    parser.add_argument("--ndf", type=int, default=16)
    parser.add_argument(
        "--threads",
        type=int,
        default=2,
        help="torch threads, and the Ray worker's CPUs (default: 2)",
    )
    parser.add_argument(
        "--loader-workers",
        type=int,
        default=1,
        help="data-loading processes in both runs (default: 1)",
    )
    parser.add_argument("--json", help="also write the numbers here")
    parser.add_argument("--debug", action="store_true")
    args = parser.parse_args(argv)

    from orchestrator.runtime import connect

    with tempfile.TemporaryDirectory(prefix="ray-overhead-") as tmp:
        root = Path(tmp)
        data = generate(
            "colorshift", root / "data", n_train=args.n_train, n_test=2, size=args.size, seed=0
        )
        connect("local", num_cpus=args.threads)
        first, last = args.save_every, args.epochs
        rows = []
        for r in range(args.rounds):
            # Plain first in odd rounds, Ray first in even ones: a load that rises or falls during a
            # round does not always favour the same side.
            timings = {}
            for side in ("plain", "ray") if r % 2 == 0 else ("ray", "plain"):
                cfg = bench_config(data, root / f"{side}{r}", args)
                timings[side] = (
                    plain_timing(cfg, args.threads, first, last)
                    if side == "plain"
                    else ray_timing(cfg, args.threads, root / "storage", f"bench{r}", first, last)
                )
            plain, ray_ = timings["plain"], timings["ray"]
            row = {
                "round": r + 1,
                "plain_epoch_s": plain.epoch_s,
                "ray_epoch_s": ray_.epoch_s,
                "plain_loop_s": plain.loop_s,
                "ray_loop_s": ray_.loop_s,
                "plain_around_s": plain.around_s,
                "ray_around_s": ray_.around_s,
                "overhead": ray_.epoch_s / plain.epoch_s - 1,
                "added_around": (ray_.around_s - plain.around_s) / plain.epoch_s,
            }
            rows.append(row)
            print(
                f"round {r + 1}: plain {plain.epoch_s:.3f} s/epoch (loop {plain.loop_s:.3f}), Ray "
                f"Train 1 worker {ray_.epoch_s:.3f} "
                f"s/epoch (loop {ray_.loop_s:.3f}): wall {100 * row['overhead']:+.1f}%, outside "
                f"the loop "
                f"{ray_.around_s - plain.around_s:+.3f} s/epoch = "
                f"{100 * row['added_around']:+.1f}% of a plain epoch",
                flush=True,
            )
    summary = {key: statistics.median(r[key] for r in rows) for key in rows[0] if key != "round"}
    summary.update(rounds=rows, options=vars(args), epochs_measured=f"{first + 1}-{last}")
    print(
        f"median over {args.rounds} rounds, epochs {first + 1}-{last}: plain "
        f"{summary['plain_epoch_s']:.3f} s/epoch, "
        f"Ray {summary['ray_epoch_s']:.3f} s/epoch, wall {100 * summary['overhead']:+.1f}%; added "
        f"outside the loop "
        f"{100 * summary['added_around']:+.2f}% of a plain epoch"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
