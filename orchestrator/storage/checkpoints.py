"""The Ray checkpoint of a CycleGAN run: the single-machine trainer's files, plus each rank's own
state.

A checkpoint folder (`checkpoint_epoch_0005/` in the run's storage) holds

    latest_state.pt                    the full training state, as `cyclegan train` writes it
    latest_net_{G_A,G_B,D_A,D_B}.pth   the networks, in the reference implementation's format
    config.json                        the training options
    metrics.json                       what the run reported at that epoch
    worker_states.pt                   (DDP only) each rank's image pools and RNG, indexed by rank

so `python -m cyclegan translate --checkpoint .../latest_net_G_A.pth` and
`python -m cyclegan train --continue_train` use it as it is, and `orchestrator train
--resume-from` starts from a single-machine run's folder.

Ray Train keeps a Train run's checkpoint folders (and rotates them); a one-worker sweep trial,
which trains in its own Tune trial process, keeps the same folders itself (`StoredCheckpoints`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pyarrow.fs as pafs

from cyclegan.errors import UserError
from cyclegan.run_files import CHECKPOINT_FILES, STATE_FILE
from cyclegan.sources.s3_retry import retrying
from orchestrator.storage.location import Storage

log = logging.getLogger(__name__)

WORKER_STATES = "worker_states.pt"
METRICS_FILE = "metrics.json"


CHECKPOINT_PREFIX = "checkpoint_epoch_"
# cyclegan.checkpoint (torch) is imported by the functions that read or write training state: the
# driver, which loads no torch, imports this module for `download` and `upload`
# (orchestrator.storage.best).


def download(fs: pafs.FileSystem, folder: str, dest: str | Path) -> None:
    """Copy `folder` of `fs` (S3, or the local filesystem) into the local folder `dest`, again
    when S3 throttles, resets or cuts a body short (cyclegan.sources.s3_retry)."""
    retrying(
        lambda: pafs.copy_files(
            folder, str(dest), source_filesystem=fs, destination_filesystem=pafs.LocalFileSystem()
        ),
        f"downloading {folder}",
    )


def upload(path: Path, fs: pafs.FileSystem, target: str) -> None:
    """Copy the local file `path` to `target` on `fs` (retried like `download`)."""
    retrying(
        lambda: pafs.copy_files(
            str(path), target, source_filesystem=pafs.LocalFileSystem(), destination_filesystem=fs
        ),
        f"uploading {target}",
    )


def read_bytes(fs: pafs.FileSystem, path: str) -> bytes:
    """The whole file `path` of `fs` (retried like `download`; a missing file raises
    FileNotFoundError at once)."""

    def read() -> bytes:
        with fs.open_input_stream(path) as stream:
            return stream.read()

    return retrying(read, f"reading {path}")


def write_bytes(fs: pafs.FileSystem, path: str, data: bytes) -> None:
    """Write `data` as the file `path` of `fs`, in one object (retried like `upload`)."""

    def write() -> None:
        with fs.open_output_stream(path) as stream:
            stream.write(data)

    retrying(write, f"writing {path}")


def checkpoint_dir_name(epoch: int) -> str:
    return f"{CHECKPOINT_PREFIX}{epoch:04d}"


def stage(
    out_dir: Path, dest: Path, worker_states: list[dict] | None = None, metrics: dict | None = None
) -> Path:
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
        from cyclegan import checkpoint as ckpt

        ckpt.atomic_save(worker_states, dest / WORKER_STATES)
    return dest


def state_file(path: str | Path) -> Path:
    """`latest_state.pt` in a checkpoint folder (or the file itself); a UserError naming what is
    missing."""
    path = Path(path)
    found = path if path.is_file() else path / STATE_FILE
    if not found.is_file():
        raise UserError(
            f"{path}: no {STATE_FILE} here; pass a checkpoint folder (a run's "
            f"<checkpoints_dir>/<name>/ "
            "or a Ray run's checkpoint_epoch_NNNN/) or the state file itself"
        )
    return found


def load_resume_state(folder: str | Path, rank: int, world_size: int) -> tuple[dict, dict | None]:
    """The full training state in `folder`, and this rank's own state when the checkpoint was
    written by a run with the same number of workers (else None: the rank starts from rank 0's
    pools)."""
    from cyclegan import checkpoint as ckpt

    state = ckpt.load_training_state(state_file(folder))
    per_rank = Path(folder) / WORKER_STATES
    if not per_rank.is_file():
        return state, None
    states = ckpt.load_file(per_rank)
    if len(states) != world_size:
        if rank == 0:
            log.warning(
                "the checkpoint was written by %d workers, this run has %d: every worker continues "
                "with "
                "rank 0's image pools",
                len(states),
                world_size,
            )
        return state, None
    return state, states[rank]


def load_reported_metrics(folder: str | Path) -> dict:
    """The metrics reported with the checkpoint in `folder` ({} for checkpoints written before they
    were kept)."""
    path = Path(folder) / METRICS_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


class StoredCheckpoints:
    """A run's checkpoint folders in storage, `<storage>/<run>/checkpoint_epoch_NNNN/`, written and
    rotated by the run itself: the newest `keep` stay. A folder counts once its metrics.json is
    there: it is uploaded last, so a process killed while uploading leaves a folder that is skipped
    (and deleted by the next rotation)."""

    def __init__(self, storage: Storage, run_name: str, keep: int):
        self.storage, self.run_name, self.keep = storage, run_name, keep
        self.fs = storage.filesystem or pafs.LocalFileSystem()
        self.root = f"{storage.path.rstrip('/')}/{run_name}"

    def _folders(self) -> tuple[list[str], list[str]]:
        """(complete, incomplete) checkpoint folder names, oldest first."""
        infos = retrying(
            lambda: self.fs.get_file_info(pafs.FileSelector(self.root, allow_not_found=True)),
            f"listing {self.root}",
        )
        names = sorted(
            i.base_name
            for i in infos
            if i.type == pafs.FileType.Directory and i.base_name.startswith(CHECKPOINT_PREFIX)
        )
        paths = [f"{self.root}/{n}/{METRICS_FILE}" for n in names]
        done = [
            i.type == pafs.FileType.File
            for i in retrying(lambda: self.fs.get_file_info(paths), f"listing {self.root}")
        ]
        return [n for n, ok in zip(names, done) if ok], [n for n, ok in zip(names, done) if not ok]

    @contextlib.contextmanager
    def newest(self) -> Iterator[tuple[Path, str] | None]:
        """The newest complete checkpoint as (a local folder, its URI): downloaded from S3 for the
        time of the `with`; None when there is none."""
        complete, _ = self._folders()
        if not complete:
            yield None
            return
        uri = self.storage.run_uri(self.run_name, complete[-1])
        if self.storage.is_local:
            yield Path(self.root, complete[-1]), uri
            return
        with tempfile.TemporaryDirectory(prefix="cyclegan-resume-") as tmp:
            download(self.fs, f"{self.root}/{complete[-1]}", tmp)
            yield Path(tmp), uri

    def save(self, folder: Path, name: str) -> str:
        """Upload the staged checkpoint `folder` as `name` (metrics.json last), then delete all but
        the newest `keep`; returns its URI."""
        target = f"{self.root}/{name}"
        retrying(lambda: self.fs.create_dir(target, recursive=True), f"uploading {target}")
        files = sorted(folder.iterdir(), key=lambda path: path.name == METRICS_FILE)
        for path in files:
            upload(path, self.fs, f"{target}/{path.name}")
        complete, incomplete = self._folders()
        for old in complete[: -self.keep] + [n for n in incomplete if n < complete[-1]]:
            try:
                path = f"{self.root}/{old}"
                retrying(lambda: self.fs.delete_dir(path), f"rotating {self.root}")  # noqa: B023
            except (
                FileNotFoundError,
                OSError,
            ) as err:  # a leftover folder costs space, not correctness
                log.warning(
                    "%s: could not delete the old checkpoint %s: %s", self.run_name, old, err
                )
        return self.storage.run_uri(self.run_name, name)
