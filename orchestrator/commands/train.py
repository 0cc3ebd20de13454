"""`python -m orchestrator train`: one CycleGAN training on Ray Train (DDP), with any cyclegan
flag."""

from __future__ import annotations

import argparse
import os

from cyclegan.config import add_config_arguments, config_from_args
from orchestrator.config.resources import (
    DEFAULT_KEEP_CHECKPOINTS,
    DEFAULT_MEMORY_PER_WORKER_GIB,
    DEFAULT_STORAGE,
    Resources,
)


def _train(args: argparse.Namespace) -> int:
    from orchestrator.trial.ray_train import train_on_ray
    from orchestrator.trial.spec import TrialSpec

    scaling = Resources.from_flags(
        args.workers, args.gpus_per_worker, args.cpus_per_worker, args.memory_per_worker
    )
    spec = TrialSpec(
        config_from_args(args),
        scaling,
        args.storage,
        max_failures=args.max_failures,
        keep_checkpoints=args.keep_checkpoints,
        resume_from=args.resume_from,
    )
    cfg = spec.config
    # train_on_ray checks the storage, then logs the effective batch (workers x --batch_size) before
    # training starts.
    result = train_on_ray(spec, address=args.address)
    epochs = result.metrics.get("epoch", cfg.total_epochs)
    if result.already_complete:
        print(
            f"{cfg.name} had already finished its {cfg.total_epochs} epochs in {result.path}; "
            f"nothing to do "
            "(pass another --name to train again)"
        )
    else:
        print(
            f"done: {cfg.name}, {epochs} epochs on {scaling.workers} worker(s) x batch "
            f"{cfg.batch_size} "
            f"(effective batch {cfg.batch_size * scaling.workers})"
            + (f", resumed after epoch {result.start_epoch - 1}" if result.start_epoch > 1 else "")
        )
    checkpoint = result.checkpoint_path
    if checkpoint:
        print(
            f"  checkpoint:   {checkpoint} (latest_net_G_A.pth and the rest; the last "
            f"{args.keep_checkpoints} kept)"
        )
        if "://" not in checkpoint:
            print(
                f"  translate:    python -m cyclegan translate --checkpoint "
                f"{checkpoint}/latest_net_G_A.pth --input DIR --output DIR"
            )
    print(f"  sample grids: {result.output_dir}/samples/index.html (on rank 0's node)")
    if result.metrics and not result.already_complete:
        print(
            "  last epoch:   "
            + ", ".join(
                f"{k}={result.metrics[k]:.4g}"
                for k in ("loss_G", "loss_D_A", "loss_D_B", "pairs_per_s")
                if isinstance(result.metrics.get(k), (int, float))
            )
        )
    return 0


def register(subparsers) -> None:
    train = subparsers.add_parser(
        "train",
        help=(
            "train one CycleGAN on Ray Train (DDP over workers and nodes, checkpoints in storage, "
            "retries)"
        ),
        description="Train a CycleGAN with Ray Train: DDP over --workers processes (GPUs on a "
        "cluster, gloo on CPUs), "
        "checkpoints every --save_epoch_freq epochs to --storage, worker failures retried from the "
        "last "
        "checkpoint. Relaunching the same command (same --name and --storage) resumes the run. "
        "Every `python -m cyclegan train` flag works; --batch_size is per worker.",
    )
    ray_group = train.add_argument_group("ray")
    ray_group.add_argument("--workers", type=int, default=1, help="DDP workers (default: 1)")
    ray_group.add_argument(
        "--gpus-per-worker",
        dest="gpus_per_worker",
        type=float,
        default=0,
        help="GPUs per worker: 0 trains on CPUs with gloo, 1 on GPUs with NCCL (default: 0)",
    )
    ray_group.add_argument(
        "--cpus-per-worker",
        dest="cpus_per_worker",
        type=float,
        default=1,
        help="CPUs per worker, also its torch threads on CPU (default: 1)",
    )
    ray_group.add_argument(
        "--memory-per-worker",
        dest="memory_per_worker",
        type=float,
        default=DEFAULT_MEMORY_PER_WORKER_GIB,
        metavar="GIB",
        help="GiB of RAM each worker reserves: workers only start on nodes with that much "
        f"unreserved (Ray's memory resource; 0: no reservation; default: "
        f"{DEFAULT_MEMORY_PER_WORKER_GIB:g})",
    )
    ray_group.add_argument(
        "--storage",
        default=DEFAULT_STORAGE,
        help="where checkpoints go: a folder (shared by all nodes on a cluster) or "
        "s3://bucket/prefix; "
        "an S3-compatible endpoint comes from $AWS_ENDPOINT_URL_S3 or "
        "?endpoint_override=HOST:PORT&scheme=http "
        f"(default: {DEFAULT_STORAGE})",
    )
    ray_group.add_argument(
        "--max-failures",
        dest="max_failures",
        type=int,
        default=0,
        help="worker failures to recover from, each resuming from the last checkpoint (default: 0)",
    )
    ray_group.add_argument(
        "--keep-checkpoints",
        dest="keep_checkpoints",
        type=int,
        default=DEFAULT_KEEP_CHECKPOINTS,
        help=(
            f"checkpoints kept in storage, the oldest deleted (default: {DEFAULT_KEEP_CHECKPOINTS})"
        ),
    )
    ray_group.add_argument(
        "--resume-from",
        dest="resume_from",
        default=None,
        help="start from this checkpoint folder (a `cyclegan train` output folder or a "
        "checkpoint_epoch_NNNN/) "
        "when the run has no checkpoint of its own yet",
    )
    ray_group.add_argument(
        "--address",
        default=os.environ.get("RAY_ADDRESS"),
        help=(
            "Ray cluster: 'auto', ray://HOST:PORT or HOST:PORT (default: $RAY_ADDRESS, else a "
            "private local Ray)"
        ),
    )
    train.add_argument("--debug", action="store_true", help="show full tracebacks and debug logs")
    add_config_arguments(train, skip=("continue_train",))
    train.set_defaults(run=_train)
