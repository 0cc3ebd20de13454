"""The Python parts of scripts/gpu_check.sh (issue 31): the steps no `python -m cyclegan` command
covers, and the script's bookkeeping. Run from the repository's root; stdlib, torch and cyclegan
only (the GPU machine has no Ray, MLflow or boto3).

    python scripts/gpu_check.py env                     versions, the GPU and its free memory
    python scripts/gpu_check.py fallback --device cuda  the fast path's failures fall back to eager
    python scripts/gpu_check.py ddp --device cuda       one-GPU DDP against no DDP
    python scripts/gpu_check.py packing DIR --k 2       aggregate pairs/s of k trainings at once
    python scripts/gpu_check.py record ...              one step's record in steps.jsonl

A line `RESULT {json}` in a step's output is a result the script copies into that step's record.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import socket
import sys
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from unittest import mock

sys.path.insert(
    0, str(Path(__file__).resolve().parent.parent)
)  # `python scripts/gpu_check.py` from anywhere

RESULT = "RESULT "


def result(**fields) -> None:
    print(RESULT + json.dumps(fields), flush=True)


# -- env ------------------------------------------------------------------------------------------
def env(args: argparse.Namespace) -> int:
    import torch

    versions = {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
    }
    for name in ("triton", "numpy", "pytest", "pytest-timeout", "ray", "mlflow"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    print(" ".join(f"{k} {v}" for k, v in versions.items()))
    if not torch.cuda.is_available():
        print("CUDA: not available")
        result(**versions, cuda_available=False)
        return 1 if args.need_cuda else 0
    props = torch.cuda.get_device_properties(0)
    free, total = torch.cuda.mem_get_info(0)
    print(
        f"GPU: {props.name}, compute capability {props.major}.{props.minor}, "
        f"{props.multi_processor_count} SMs, "
        f"{free / 2**30:.1f} of {total / 2**30:.1f} GiB free, {torch.cuda.device_count()} device(s)"
    )
    result(
        **versions,
        cuda_available=True,
        gpu=props.name,
        capability=f"{props.major}.{props.minor}",
        sms=props.multi_processor_count,
        free_gib=round(free / 2**30, 2),
        total_gib=round(total / 2**30, 2),
    )
    return 0


# -- fallback -------------------------------------------------------------------------------------
def _setup(args: argparse.Namespace):
    """The device and the networks' shape; `--threads` for torch on CPU."""
    import torch

    from cyclegan.bench import Shape

    if args.threads:
        torch.set_num_threads(args.threads)
    return torch.device(args.device), Shape(args.size, args.blocks, args.ngf, args.ndf)


def _compile_with_failing_backend():
    """torch.compile as the fast path calls it, but with a backend that fails: dynamo's real error
    path."""
    import torch

    real_compile = torch.compile

    def failing_backend(gm, example_inputs):
        raise RuntimeError("injected by gpu_check: the compiler backend failed")

    return mock.patch.object(
        torch, "compile", lambda module, mode=None: real_compile(module, backend=failing_backend)
    )


@contextmanager
def _failing_capture():
    import torch

    def graph(*args, **kwargs):
        raise RuntimeError("injected by gpu_check: capture failed")

    with mock.patch.object(torch.cuda, "graph", graph):
        yield


def fallback(args: argparse.Namespace) -> int:
    """Each fast path's failure, injected: the run must go on eagerly with finite losses and say
    why. Each case trains `--steps` steps (at least 6: 3 eager warm-up steps, capture, replays)."""
    import torch

    from cyclegan.bench import BenchConfig, _inputs, build_model

    device, shape = _setup(args)
    cuda = device.type == "cuda"
    fast = {"precision": "bf16", "channels_last": True} if cuda else {}
    cases = [
        (
            "compile",
            BenchConfig("compiled", 1, compile="default", cuda_graphs=cuda, **fast),
            _compile_with_failing_backend,
            "torch.compile failed",
        )
    ]
    if cuda:
        cases += [
            (
                "capture",
                BenchConfig("graphs", 1, cuda_graphs=True, **fast),
                _failing_capture,
                "CUDA-graph capture failed",
            ),
            (
                "replay",
                BenchConfig("graphs", 1, cuda_graphs=True, **fast),
                lambda: mock.patch.object(
                    torch.cuda.CUDAGraph,
                    "replay",
                    side_effect=RuntimeError("injected by gpu_check"),
                ),
                "CUDA-graph replay failed",
            ),
        ]
    else:
        print("capture, replay: need CUDA (not checked on CPU)")
    failures = 0
    for name, spec, inject, expected in cases:
        with inject():
            model = build_model(spec, shape, device)
            real_A, real_B = _inputs(1, args.size, device, model.memory_format)
            losses = [model.train_step(real_A, real_B) for _ in range(max(args.steps, 6))]
        finite = all(
            bool(torch.isfinite(torch.stack(list(step.values()))).all()) for step in losses
        )
        reason = model.fast_path_fallback or ""
        ok = (
            reason.startswith(expected)
            and finite
            and not model.compiled
            and model.graphed_step is None
        )
        failures += not ok
        print(f"{name}: {'ok' if ok else 'FAILED'}: fallback {reason!r}, losses finite: {finite}")
        result(case=name, ok=ok, reason=reason, losses_finite=finite)
        del model
    return 1 if failures else 0


# -- ddp ------------------------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ddp(args: argparse.Namespace) -> int:
    """One process, one GPU: the step with and without DistributedDataParallel (world size 1), with
    the project's own DDP settings (cyclegan.speed.ddp_wrap: the buckets a Ray Train worker uses).
    Under DDP the captured step is off (cyclegan.speed), so the no-DDP rows show both what DDP
    itself costs (same configuration) and what a one-worker trial's captured step gains over it."""
    import torch
    import torch.distributed as dist

    from cyclegan.bench import BenchConfig, measure
    from cyclegan.speed import ddp_wrap

    device, shape = _setup(args)
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.set_device(device)
    dist.init_process_group(
        "nccl" if cuda else "gloo",
        init_method=f"tcp://127.0.0.1:{_free_port()}",
        rank=0,
        world_size=1,
    )
    try:
        if cuda:
            step = BenchConfig("eager-bf16-cl", args.batch, precision="bf16", channels_last=True)
            runs = [
                (
                    BenchConfig(
                        "graphs-bf16-cl",
                        args.batch,
                        precision="bf16",
                        channels_last=True,
                        cuda_graphs=True,
                    ),
                    False,
                ),
                (step, False),
                (step, True),
            ]
        else:
            runs = [
                (BenchConfig("eager-fp32", args.batch), False),
                (BenchConfig("eager-fp32", args.batch), True),
            ]
        print(f"{'config':<24} {'DDP':>4} {'ms/iter':>9} {'pairs/s':>8} {'peak MB':>8}")
        no_ddp_ms = {}
        for spec, wrapped in runs:
            r = measure(
                spec,
                shape,
                device,
                args.iters,
                args.warmup,
                wrap=ddp_wrap(device) if wrapped else None,
            )
            print(
                f"{r['name']:<24} {'yes' if wrapped else 'no':>4} {r['ms_per_iter']:>9.1f} "
                f"{r['pairs_per_s']:>8.1f} {r['peak_memory_mb']:>8.0f}"
            )
            if not wrapped:
                no_ddp_ms[spec] = r["ms_per_iter"]
            cost = r["ms_per_iter"] / no_ddp_ms[spec] - 1 if wrapped else None
            result(
                config=r["name"],
                ddp=wrapped,
                ms_per_iter=r["ms_per_iter"],
                pairs_per_s=r["pairs_per_s"],
                peak_memory_mb=r["peak_memory_mb"],
                ddp_cost=cost,
            )
            if cost is not None:
                print(
                    f"DDP over one GPU costs {cost:+.1%} per step against the same configuration "
                    f"without DDP"
                )
    finally:
        dist.destroy_process_group()
    return 0


# -- packing --------------------------------------------------------------------------------------
def packing(args: argparse.Namespace) -> int:
    """k trainings ran at once into DIR/k<k>_<i>/: each one's last epoch's pairs/s and their sum."""
    runs = sorted(Path(args.dir).glob(f"k{args.k}_*/metrics.jsonl"))
    rates = []
    for path in runs:
        last = json.loads(path.read_text().splitlines()[-1])
        rates.append(last["pairs_per_s"])
    if len(rates) < args.k:
        print(f"k={args.k}: only {len(rates)} of {args.k} runs wrote their metrics")
    total = sum(rates)
    print(
        f"k={args.k}: aggregate {total:.1f} pairs/s over {len(rates)} run(s), each: "
        f"{', '.join(f'{r:.1f}' for r in rates)}"
    )
    result(
        k=args.k, runs_finished=len(rates), aggregate_pairs_per_s=total, per_run_pairs_per_s=rates
    )
    return 0 if len(rates) == args.k else 1


# -- record ---------------------------------------------------------------------------------------
def record(args: argparse.Namespace) -> int:
    """Append one step's record to OUT/steps.jsonl: its status, time, limit, note, the RESULT lines
    of its output, and the files OUT held when it ended. Synced: a machine lost later still returns
    it."""
    out = Path(args.out)
    text = Path(args.output).read_text(errors="replace") if Path(args.output).exists() else ""
    results = []
    for line in text.splitlines():
        if line.startswith(RESULT):
            try:
                results.append(json.loads(line[len(RESULT) :]))
            except json.JSONDecodeError:
                pass
    entry = {
        "step": args.step,
        "name": args.name,
        "title": args.title,
        "status": args.status,
        "rc": args.rc,
        "seconds": args.seconds,
        "limit_s": args.limit,
        "note": args.note,
        "results": results,
        "files": sorted(p.name for p in out.iterdir() if p.is_file()),
    }
    with open(out / "steps.jsonl", "a") as f:
        f.write(json.dumps(entry) + "\n")
        f.flush()
        os.fsync(f.fileno())
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python scripts/gpu_check.py", description=__doc__.split("\n\n")[0]
    )
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("env", help="versions, the GPU and its free memory")
    p.add_argument("--need-cuda", action="store_true", help="exit 1 when CUDA is not available")
    p.set_defaults(run=env)

    for name, fn, helptext in (
        ("fallback", fallback, "inject each fast path's failure; the run must go on eagerly"),
        ("ddp", ddp, "the step with and without DDP over one GPU (world size 1)"),
    ):
        p = sub.add_parser(name, help=helptext)
        p.add_argument("--device", default="cuda")
        p.add_argument("--size", type=int, default=64)
        p.add_argument("--blocks", type=int, default=2)
        p.add_argument("--ngf", type=int, default=64)
        p.add_argument("--ndf", type=int, default=64)
        p.add_argument("--batch", type=int, default=1)
        p.add_argument(
            "--steps",
            type=int,
            default=6,
            help="fallback: steps trained with the failure injected (at least 6)",
        )
        p.add_argument(
            "--iters", type=int, default=20, help="ddp: timed iterations per configuration"
        )
        p.add_argument("--warmup", type=int, default=5, help="ddp: untimed iterations first")
        p.add_argument(
            "--threads", type=int, default=0, help="CPU threads for torch (default: torch's choice)"
        )
        p.set_defaults(run=fn)

    p = sub.add_parser("packing", help="aggregate pairs/s of the k trainings in DIR/k<k>_<i>/")
    p.add_argument("dir")
    p.add_argument("--k", type=int, required=True)
    p.set_defaults(run=packing)

    p = sub.add_parser("record", help="append one step's record to OUT/steps.jsonl")
    for name in ("out", "output", "name", "title", "status", "note"):
        p.add_argument(f"--{name}", required=True)
    for name in ("step", "rc", "seconds", "limit"):
        p.add_argument(f"--{name}", type=int, required=True)
    p.set_defaults(run=record)

    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
