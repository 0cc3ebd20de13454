"""DDP for the CycleGAN trainer, applied from outside: plain torch.distributed, no Ray.

- `make_wrap`: what `Trainer(wrap=...)` applies to the generator group and the discriminator
  group (SyncBatchNorm first with `--norm batch` on GPUs, then DDP with cyclegan.speed's buckets).
- `Collectives`: the few small exchanges the Ray layer needs once per epoch (average the losses,
  gather per-rank state for a checkpoint), over a gloo group so that they work the same beside
  NCCL and on CPU.
- `worker_state` / `load_worker_state`: what differs between ranks (each rank's image pools
  and RNG), so that a resumed DDP run continues exactly as an uninterrupted one; `rank_record`
  adds a fingerprint of the weights and the rank's shard, from which `consistency` checks that
  the replicas agree and the shards are disjoint.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

import torch
import torch.distributed as dist
from torch import nn

from cyclegan import checkpoint as ckpt
from cyclegan.config import TrainConfig
from cyclegan.metric_names import EPOCH_METRICS, LOSS_NAMES
from cyclegan.model import CycleGAN
from cyclegan.speed import ddp_wrap

log = logging.getLogger(__name__)


def make_wrap(
    cfg: TrainConfig, device: torch.device, world_size: int
) -> Callable[[nn.Module], nn.Module] | None:
    """The Trainer's `wrap` for this world size (None alone: DDP over one process only costs
    time)."""
    if world_size <= 1:
        return None
    to_ddp = ddp_wrap(device)
    if cfg.norm == "batch" and device.type == "cpu":
        log.warning(
            "--norm batch on CPU workers: batch statistics are per worker (torch's SyncBatchNorm "
            "needs GPUs)"
        )

    def wrap(module: nn.Module) -> nn.Module:
        return to_ddp(synchronize_norms(module, cfg, device))

    return wrap


def synchronize_norms(module: nn.Module, cfg: TrainConfig, device: torch.device) -> nn.Module:
    """With `--norm batch` on accelerators, batch norm over the global batch (SyncBatchNorm).
    The layers are replaced in place and keep their Parameters, which the optimizers hold."""
    if cfg.norm != "batch" or device.type == "cpu":
        return module
    return nn.SyncBatchNorm.convert_sync_batchnorm(module)


def worker_state(model: CycleGAN) -> dict:
    """The part of the training state that is this rank's own: pools and RNG."""
    return {
        "pool_A": model.pool_A.state_dict(),
        "pool_B": model.pool_B.state_dict(),
        "rng": ckpt.rng_state(),
    }


def decorrelate_pools(model: CycleGAN, rank: int) -> None:
    """Give rank r > 0 its own stream of pool choices (rank 0 keeps the single-machine seeds), so
    that the ranks' pools do not all swap in a stored image at the same steps."""
    if rank:
        for offset, pool in enumerate((model.pool_A, model.pool_B), start=1):
            pool.generator.manual_seed(model.cfg.seed * 2 + offset + 1_000_003 * rank)


def rank_record(model: CycleGAN, shard: list[int]) -> dict:
    """What a rank contributes to a checkpoint: its own state, plus its weights' fingerprint and
    this epoch's shard (for `consistency`, and for anyone auditing the checkpoint later)."""
    return {
        **worker_state(model),
        "fingerprint": fingerprint([model.generators, model.discriminators]),
        "shard": list(shard),
    }


def load_worker_state(model: CycleGAN, state: dict) -> None:
    model.pool_A.load_state_dict(state["pool_A"], model.device)
    model.pool_B.load_state_dict(state["pool_B"], model.device)
    ckpt.set_rng_state(state["rng"])


def fingerprint(modules: list[nn.Module]) -> list[float]:
    """Per-tensor sums and sums of squares (float64) of every parameter and buffer: equal on two
    replicas exactly when their weights are (for all practical purposes)."""
    tensors = [t for m in modules for t in (*m.parameters(), *m.buffers()) if t.is_floating_point()]
    with torch.no_grad():
        stats = torch.stack(
            [torch.stack([t.double().sum(), t.double().square().sum()]) for t in tensors]
        )
    return stats.flatten().cpu().tolist()


class Collectives:
    """Small per-epoch exchanges between the ranks. Every method is collective: all ranks call
    it."""

    def __init__(self, rank: int, world_size: int):
        self.rank, self.world_size = rank, world_size
        self.group = None
        if world_size > 1:
            # Objects go through gloo (CPU), whatever the training backend: NCCL would need them on
            # a GPU.
            self.group = (
                dist.group.WORLD if dist.get_backend() == "gloo" else dist.new_group(backend="gloo")
            )

    def barrier(self) -> None:
        if self.world_size > 1:
            dist.barrier(group=self.group)

    def gather_to_main(self, obj) -> list | None:
        """Every rank's `obj` on rank 0 (a list indexed by rank), None elsewhere."""
        if self.world_size == 1:
            return [obj]
        out: list | None = [None] * self.world_size if self.rank == 0 else None
        dist.gather_object(obj, out, dst=0, group=self.group)
        return out

    def average_losses(self, metrics: dict) -> dict:
        """The epoch's mean losses over all ranks (each rank trained on its own shard): the model's
        losses and every per-epoch metric that can rank trials (metric_names.EPOCH_METRICS)."""
        keys = [
            k
            for k in dict.fromkeys([f"loss_{k}" for k in LOSS_NAMES] + list(EPOCH_METRICS))
            if k in metrics
        ]
        if self.world_size == 1 or not keys:
            return metrics
        values = torch.tensor([float(metrics[k]) for k in keys], dtype=torch.float64)
        dist.all_reduce(values, group=self.group)
        return {**metrics, **dict(zip(keys, (values / self.world_size).tolist()))}


def consistency(states: list[dict], dataset_size: int) -> dict:
    """DDP health from every rank's `rank_record`: do all replicas hold the same weights, do the
    ranks' shards overlap, do they cover the dataset?"""
    prints = [s["fingerprint"] for s in states]
    seen: dict[int, int] = {}
    for state in states:
        for i in set(state["shard"]):
            seen[i] = seen.get(i, 0) + 1
    # The sampler pads the last round by wrapping around: that many repeats are expected.
    padding = max(len(states[0]["shard"]) * len(states) - dataset_size, 0)
    overlap = sum(n - 1 for n in seen.values() if n > 1) - padding
    return {
        "ddp_replicas_in_sync": all(p == prints[0] for p in prints),
        "ddp_shard_overlap": overlap,
        "ddp_shard_coverage": len(seen) / max(dataset_size, 1),
    }
