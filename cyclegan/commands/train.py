"""`python -m cyclegan train`: train a CycleGAN on one machine, with the reference implementation's
flags."""

from __future__ import annotations

import argparse

from ..config import add_config_arguments, config_from_args
from ..run_files import LATEST, LOSS_LOG, METRICS_LOG, SAMPLES_DIR, STATE_FILE, network_file
from .reference_flags import add_train_flags


def register(subparsers) -> None:
    train = subparsers.add_parser(
        "train",
        help="train a CycleGAN on a dataset with trainA/ trainB/",
        description=(
            "Train a CycleGAN. Defaults are the paper's; flags are the reference implementation's."
        ),
    )
    train.add_argument("--debug", action="store_true", help="show full tracebacks and debug logs")
    add_config_arguments(train)
    add_train_flags(train)
    train.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from ..trainer import Trainer
    from .reference_flags import apply_train_flags, describe_networks

    for note in apply_train_flags(args, torch.cuda.is_available()):
        print(f"note: {note}")
    cfg = config_from_args(args)
    trainer = Trainer(cfg)
    if args.verbose:
        print(describe_networks(trainer.model.nets))
    metrics = trainer.fit()
    out = trainer.out_dir
    print(f"done: {cfg.name}, {cfg.total_epochs} epochs")
    print(
        f"  checkpoints:  {out}/{network_file(LATEST, 'G_A')} (and G_B, D_A, D_B; full state in "
        f"{out}/{STATE_FILE})"
    )
    if cfg.n_samples:
        print(f"  sample grids: {out}/{SAMPLES_DIR}/index.html")
    print(f"  loss log:     {out}/{LOSS_LOG}, per-epoch metrics in {out}/{METRICS_LOG}")
    if metrics:
        print(
            "  last epoch:   "
            + ", ".join(
                f"{k}={metrics[k]:.4g}" for k in ("loss_G", "loss_D_A", "loss_D_B", "pairs_per_s")
            )
        )
    return 0
