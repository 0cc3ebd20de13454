"""The Ray checkpoint of a CycleGAN run: the single-machine trainer's files, plus each rank's own state.

A checkpoint folder (`checkpoint_epoch_0005/` in the run's storage) holds

    latest_state.pt                    the full training state, as `python -m cyclegan train` writes it
    latest_net_{G_A,G_B,D_A,D_B}.pth   the networks, in the reference implementation's format
    config.json                        the training options
    metrics.json                       what the run reported at that epoch
    worker_states.pt                   (DDP only) each rank's image pools and RNG, indexed by rank

so `python -m cyclegan translate --checkpoint .../latest_net_G_A.pth` and
`python -m cyclegan train --continue_train` use it as it is, and `orchestrator train
--resume-from` starts from a single-machine run's folder.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

from cyclegan import checkpoint as ckpt
from cyclegan.errors import UserError
from cyclegan.run_files import CHECKPOINT_FILES, STATE_FILE

log = logging.getLogger(__name__)

WORKER_STATES = "worker_states.pt"
METRICS_FILE = "metrics.json"


def checkpoint_dir_name(epoch: int) -> str:
    return f"checkpoint_epoch_{epoch:04d}"


def stage(out_dir: Path, dest: Path, worker_states: list[dict] | None = None, metrics: dict | None = None) -> Path:
    """Fill `dest` with the checkpoint files of the trainer's `out_dir` (hard links where the
    filesystem allows: the trainer replaces its files by rename, so a link never changes)."""
    dest.mkdir(parents=True, exist_ok=True)
    if metrics is not None:
        (dest / METRICS_FILE).write_text(json.dumps(metrics, default=str))
    for name in CHECKPOINT_FILES:
        src = out_dir / name
        if not src.is_file():
            continue
        try:
            os.link(src, dest / name)
        except OSError:
            shutil.copy2(src, dest / name)
    if worker_states is not None:
        ckpt.atomic_save(worker_states, dest / WORKER_STATES)
    return dest


def state_file(path: str | Path) -> Path:
    """`latest_state.pt` in a checkpoint folder (or the file itself); a UserError naming what is missing."""
    path = Path(path)
    found = path if path.is_file() else path / STATE_FILE
    if not found.is_file():
        raise UserError(f"{path}: no {STATE_FILE} here; pass a checkpoint folder (a run's <checkpoints_dir>/<name>/ "
                        "or a Ray run's checkpoint_epoch_NNNN/) or the state file itself")
    return found


def load_resume_state(folder: str | Path, rank: int, world_size: int) -> tuple[dict, dict | None]:
    """The full training state in `folder`, and this rank's own state when the checkpoint was
    written by a run with the same number of workers (else None: the rank starts from rank 0's pools)."""
    state = ckpt.load_training_state(state_file(folder))
    per_rank = Path(folder) / WORKER_STATES
    if not per_rank.is_file():
        return state, None
    states = ckpt.load_file(per_rank)
    if len(states) != world_size:
        if rank == 0:
            log.warning("the checkpoint was written by %d workers, this run has %d: every worker continues with "
                        "rank 0's image pools", len(states), world_size)
        return state, None
    return state, states[rank]


def load_reported_metrics(folder: str | Path) -> dict:
    """The metrics reported with the checkpoint in `folder` ({} for checkpoints written before they were kept)."""
    path = Path(folder) / METRICS_FILE
    return json.loads(path.read_text()) if path.is_file() else {}
