"""`python -m cyclegan bench`: time the training step, eager fp32 batch 1 against the fast
configurations (cyclegan.bench)."""

from __future__ import annotations

import argparse

from ..errors import UserError
from .runner import dump_json

_COLUMNS = ("config", "batch", "ms/iter", "pairs/s", "speed-up", "TFLOP/s", "peak MB")


def format_row(r: dict) -> str:
    return (
        f"{r['name']:<28} {r['batch']:>5} {r['ms_per_iter']:>9.1f} {r['pairs_per_s']:>8.1f} "
        f"{r['speedup']:>7.2f}x {r['tflops']:>8.3f} {r['peak_memory_mb']:>8.0f}"
    )


def format_header() -> str:
    return (
        f"{_COLUMNS[0]:<28} {_COLUMNS[1]:>5} {_COLUMNS[2]:>9} {_COLUMNS[3]:>8} {_COLUMNS[4]:>8} "
        f"{_COLUMNS[5]:>8} {_COLUMNS[6]:>8}"
    )


def _batches(text: str) -> list[int]:
    try:
        batches = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        batches = []
    if not batches or min(batches) < 1:
        raise UserError(
            f"--batch {text!r}: give batch sizes as a comma-separated list of positive integers, "
            f"e.g. 1,4,8"
        )
    return sorted(set(batches))


def _command(args: argparse.Namespace) -> str:
    """The exact command, every option spelled out, to repeat this run."""
    parts = [
        "python -m cyclegan bench",
        f"--size {args.size} --blocks {args.blocks} --ngf {args.ngf} --ndf {args.ndf}",
        f"--batch {args.batch} --iters {args.iters} --warmup {args.warmup} --device {args.device}",
    ]
    for flag, value in (
        ("--configs", args.configs),
        ("--loader-workers", args.loader_workers),
        ("--loss-check", args.loss_check),
        ("--threads", args.threads),
        ("--json", args.json),
    ):
        if value:
            parts.append(f"{flag} {value}")
    if args.compile_mode != "default":
        parts.append(f"--compile-mode {args.compile_mode}")
    return " ".join(parts)


def run(args: argparse.Namespace) -> int:
    import torch

    from ..bench import (
        BASELINE,
        BATCH1_TARGET,
        THROUGHPUT_TARGET,
        Shape,
        default_configs,
        device_description,
        run_bench,
    )
    from ..model import resolve_device

    if args.size < 32 or args.size % 4:
        raise UserError(
            f"--size {args.size}: must be a multiple of 4 and at least 32 (the 70x70 PatchGAN "
            f"needs room)"
        )
    for name in ("blocks", "ngf", "ndf", "iters"):
        if getattr(args, name) < 1:
            raise UserError(f"--{name}: must be at least 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    shape = Shape(args.size, args.blocks, args.ngf, args.ndf)
    configs = default_configs(device, _batches(args.batch), args.compile_mode)
    if args.configs:
        wanted = {k.strip() for k in args.configs.split(",") if k.strip()}
        known = {c.kind for c in configs}
        if wanted - known:
            raise UserError(
                f"--configs: unknown {', '.join(sorted(wanted - known))}; on {device.type}: "
                f"{', '.join(sorted(known))}"
            )
        configs = [c for c in configs if c == BASELINE or c.kind in wanted]
    print(
        f"{device_description(device)}, torch {torch.__version__}: {shape.size}x{shape.size}, "
        f"{shape.blocks} blocks, "
        f"ngf {shape.ngf}, ndf {shape.ndf}, {args.iters} timed iterations",
        flush=True,
    )
    print(format_header(), flush=True)
    report = run_bench(
        shape,
        device,
        configs,
        args.iters,
        args.warmup,
        args.loader_workers,
        args.loss_check,
        on_result=lambda r: print(format_row(r), flush=True),
    )
    report = {"command": _command(args), **report}
    t = report["targets"]
    print(
        f"batch 1: {t['batch1_speedup']:.2f}x ({t['batch1_best']}), best: {t['best_speedup']:.2f}x "
        f"({t['best']}); "
        f"targets on one H100 at 256x256/9 blocks: >= {BATCH1_TARGET:g}x and >= "
        f"{THROUGHPUT_TARGET:g}x"
        + (
            f": {'met' if t['met'] else 'NOT met'}"
            if t["this_run_applies"]
            else " (not this run's setting)"
        )
    )
    print(f"peak memory: {report['peak_memory_kind']}")
    if "loader" in report:
        ld = report["loader"]
        print(
            f"loader ({ld['workers']} workers, batch {ld['batch']}): {ld['pairs_per_s']:.1f} "
            f"pairs/s; "
            f"share of step time at {ld['against']}: {ld['share_of_step_time']:.2f}"
            + (" (keeps up)" if ld["share_of_step_time"] < 1 else " (the loader is the bottleneck)")
        )
    if "loss_check" in report:
        control = report["loss_check"]["seed_control"]
        print(
            f"losses over {report['loss_check']['iterations']} iterations, eager-fp32-b1 from "
            f"other initial weights "
            f"(seed noise, for scale): max {control['max_deviation_in_noise_units']:.2f} noise "
            f"units"
        )
        for name, c in report["loss_check"]["configs"].items():
            print(
                f"losses over {report['loss_check']['iterations']} iterations, {name} vs "
                f"eager-fp32-b1: "
                f"{'within' if c['within_noise'] else 'OUTSIDE'} the noise (max "
                f"{c['max_deviation_in_noise_units']:.2f} "
                f"noise units), first step max rel. diff {c['first_step_max_rel_diff']:.1e}"
            )
    if args.json:
        dump_json(report, args.json)
        print(f"wrote {args.json}")
    return 0


def register(subparsers) -> None:
    bench = subparsers.add_parser(
        "bench",
        help="time the training step: eager fp32 batch 1 vs the fast configurations",
        description="Run, in one process on one device, the plain eager fp32 batch-1 training step "
        "and each fast "
        "configuration on synthetic inputs; print ms/iteration, pairs/s, speed-up, TFLOP/s and "
        "peak memory.",
    )
    bench.add_argument(
        "--size",
        type=int,
        default=256,
        help="image side in pixels (default: 256; use 32-64 on CPU)",
    )
    bench.add_argument(
        "--blocks", type=int, default=9, help="residual blocks per generator (default: 9)"
    )
    bench.add_argument(
        "--ngf", type=int, default=64, help="generator width (default: the paper's 64)"
    )
    bench.add_argument(
        "--ndf", type=int, default=64, help="discriminator width (default: the paper's 64)"
    )
    bench.add_argument(
        "--batch",
        default="1,4,8",
        help="comma-separated batch sizes for the throughput configurations (default: 1,4,8)",
    )
    bench.add_argument(
        "--iters", type=int, default=50, help="timed iterations per configuration (default: 50)"
    )
    bench.add_argument(
        "--warmup",
        type=int,
        default=5,
        help="untimed iterations first: compilation, cuDNN benchmarking, "
        "graph capture (default: 5; graphed configurations always get enough to capture)",
    )
    bench.add_argument(
        "--configs",
        default="",
        help="only these configuration kinds, comma-separated (e.g. "
        "compiled-graphs-bf16-cl); eager-fp32 batch 1 always runs as the baseline",
    )
    bench.add_argument(
        "--compile-mode",
        dest="compile_mode",
        default="default",
        choices=("default", "max-autotune"),
        help="torch.compile mode of the compiled configurations (default: default)",
    )
    bench.add_argument(
        "--loader-workers",
        dest="loader_workers",
        type=int,
        default=None,
        help=(
            "also time the real data loader with this many worker processes, against the fastest "
            "configuration"
        ),
    )
    bench.add_argument(
        "--loss-check",
        dest="loss_check",
        type=int,
        default=0,
        metavar="N",
        help="also train every batch-1 configuration N iterations on the same data and seed and "
        "compare its "
        "losses with eager fp32 (default: 0, off)",
    )
    bench.add_argument(
        "--threads", type=int, default=0, help="CPU threads for torch (default: torch's choice)"
    )
    bench.add_argument("--json", default=None, help="also write the results to this JSON file")
    bench.add_argument(
        "--device", default="auto", help="cpu, cuda, cuda:N or auto (cuda when available)"
    )
    bench.add_argument("--debug", action="store_true", help="show full tracebacks and debug logs")
    bench.set_defaults(run=run)
