"""Learning-rate policies. `linear` is the paper's: constant, then linear decay to zero."""

from __future__ import annotations

from torch.optim import Optimizer, lr_scheduler

from .config import TrainConfig


def linear_factor(epoch: int, n_epochs: int, n_epochs_decay: int) -> float:
    """LR multiplier during 1-based `epoch`: 1 for the first n_epochs, then down by
    1/(n_epochs_decay + 1) per epoch (the reference implementation's exact rule)."""
    return 1.0 - max(0, epoch - n_epochs) / float(n_epochs_decay + 1)


def build_scheduler(optimizer: Optimizer, cfg: TrainConfig):
    """A scheduler stepped once at the end of every epoch. Its step count starts at
    epoch_count - 1 so that continuing from the reference's files keeps the schedule."""
    if cfg.lr_policy == "linear":
        first = cfg.epoch_count
        return lr_scheduler.LambdaLR(
            optimizer, lambda e: linear_factor(e + first, cfg.n_epochs, cfg.n_epochs_decay)
        )
    if cfg.lr_policy == "step":
        return lr_scheduler.StepLR(optimizer, step_size=cfg.lr_decay_iters, gamma=0.1)
    if cfg.lr_policy == "plateau":
        return lr_scheduler.ReduceLROnPlateau(
            optimizer, mode="min", factor=0.2, threshold=0.01, patience=5
        )
    if cfg.lr_policy == "cosine":
        return lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(1, cfg.total_epochs), eta_min=0)
    raise ValueError(f"unknown lr_policy {cfg.lr_policy!r}")
