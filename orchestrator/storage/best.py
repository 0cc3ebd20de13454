"""A trial's best epoch: the generators it had when the task's metric was at its best, kept in
storage.

GAN metrics oscillate from epoch to epoch, so a trial's result is its best evaluated epoch (an
epoch that reported the task's metric), ties going to the later epoch. Rank 0 keeps that epoch's
generators beside the run's last K checkpoints (which Ray Train rotates for resuming), in

    <storage>/<experiment>/trials/<task>-<trial>/best/
        best.json             {"epoch", "metric", "mode", "value", "folder", "ci"}: written last
        epoch_NNNN/latest_net_G_A.pth, latest_net_G_B.pth, config.json,
                   evaluation.npz, untranslated.npz   (the evaluation's evidence, cyclegan.scores)

`best.json` names the folder and is written after it, in one object, so a reader never sees a
half-written best (local folders and S3 alike); the previous folder is then deleted. A trial that
ASHA stops, that diverges or that fails keeps its best; a resumed trial carries on comparing with
the best in storage. Every report carries `best_<metric>` (what Tune, ASHA and the search algorithm
rank by: NaN until an epoch is evaluated) and `best_epoch`.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import pyarrow.fs as pafs

from cyclegan.run_files import (
    CONFIG_FILE,
    EVALUATION_FILE,
    LATEST,
    UNTRANSLATED_FILE,
    network_file,
)
from cyclegan.scores import ci_keys
from cyclegan.sources.s3_retry import retrying
from orchestrator.storage.checkpoints import download, read_bytes, upload, write_bytes
from orchestrator.storage.location import Storage

log = logging.getLogger(__name__)

BEST_DIR = "best"
BEST_FILE = "best.json"
BEST_EPOCH = "best_epoch"  # reported each epoch once there is a best
BEST_CHECKPOINT = "best_checkpoint_path"  # reported beside BEST_EPOCH: the best/ folder's URI
BEST_FILES = (
    network_file(LATEST, "G_A"),
    network_file(LATEST, "G_B"),
    CONFIG_FILE,
    EVALUATION_FILE,
    UNTRANSLATED_FILE,
)  # what registering and the promotion rule need
EVIDENCE_FILES = (EVALUATION_FILE, UNTRANSLATED_FILE)


@dataclass(frozen=True)
class Ranking:
    """What makes an epoch the best: the task's metric and its direction."""

    metric: str
    mode: str  # min or max


def best_key(metric: str) -> str:
    """The reported key holding a trial's best value so far of `metric`."""
    return f"best_{metric}"


def improves(value: float, best: float | None, mode: str) -> bool:
    """`value` is at least as good as `best`: ties go to the later epoch."""
    if not math.isfinite(value):
        return False
    return best is None or (value <= best if mode == "min" else value >= best)


@dataclass(frozen=True)
class BestRecord:
    epoch: int
    metric: str
    mode: str
    value: float
    folder: str  # under best/
    ci: tuple[float, float] | None = None  # the value's 95 % interval, when evaluated with one

    @classmethod
    def from_json(cls, text: str | bytes) -> BestRecord:
        data = json.loads(text)
        ci = data.get("ci")
        return cls(
            int(data["epoch"]),
            str(data["metric"]),
            str(data["mode"]),
            float(data["value"]),
            str(data["folder"]),
            (float(ci[0]), float(ci[1])) if ci else None,
        )


def _location(storage: Storage, run_name: str) -> tuple[pafs.FileSystem, str]:
    fs = storage.filesystem or pafs.LocalFileSystem()
    return fs, f"{storage.path.rstrip('/')}/{run_name}/{BEST_DIR}"


def read_best(storage: Storage, run_name: str) -> BestRecord | None:
    """What run `run_name` keeps as its best, or None (no evaluated epoch yet, or another
    layout)."""
    fs, root = _location(storage, run_name)
    try:  # throttling is retried: a best that S3 is slow to give is not "no best"
        return BestRecord.from_json(read_bytes(fs, f"{root}/{BEST_FILE}"))
    except (FileNotFoundError, OSError, ValueError, KeyError):
        return None


def fetch_best(
    storage: Storage, run_name: str, dest: Path, only: tuple[str, ...] | None = None
) -> tuple[Path, BestRecord] | None:
    """Copy run `run_name`'s best (generators and evidence; `only` these files, those there)
    into `dest`; None when it has none."""
    record = read_best(storage, run_name)
    if record is None:
        return None
    fs, root = _location(storage, run_name)
    dest.mkdir(parents=True, exist_ok=True)
    if only is None:
        download(fs, f"{root}/{record.folder}", dest)
    for name in only or ():
        try:
            download(fs, f"{root}/{record.folder}/{name}", dest / name)
        except (FileNotFoundError, OSError):  # kept before the evidence was
            continue
    return dest, record


class BestKeeper:
    """Rank 0's keeper of a run's best epoch (see the module docstring)."""

    def __init__(self, ranking: Ranking, storage: Storage, run_name: str):
        self.metric, self.mode, self.storage, self.run_name = (
            ranking.metric,
            ranking.mode,
            storage,
            run_name,
        )
        self.fs, self.root = _location(storage, run_name)
        self.record = read_best(
            storage, run_name
        )  # a resumed run compares with what it kept before
        if self.record is not None and (self.record.metric, self.record.mode) != (
            self.metric,
            self.mode,
        ):
            log.warning(
                "%s: the kept best is by %s, this run ranks by %s: starting afresh",
                run_name,
                self.record.metric,
                self.metric,
            )
            self.record = None

    def update(self, epoch: int, metrics: dict, out_dir: Path) -> dict:
        """Keep `out_dir`'s generators if `metrics` holds the best value so far; return the best_*
        keys to report."""
        value = metrics.get(self.metric)
        if isinstance(value, (int, float)) and improves(
            float(value), self.record.value if self.record else None, self.mode
        ):
            low, high = (metrics.get(key) for key in ci_keys(self.metric))
            ci = (float(low), float(high)) if low is not None and high is not None else None
            self._keep(epoch, float(value), out_dir, ci)
        if self.record is None:
            return {best_key(self.metric): math.nan}
        return {
            best_key(self.metric): self.record.value,
            BEST_EPOCH: self.record.epoch,
            BEST_CHECKPOINT: self.storage.run_uri(self.run_name, BEST_DIR),
        }

    def _keep(
        self, epoch: int, value: float, out_dir: Path, ci: tuple[float, float] | None
    ) -> None:
        folder = f"epoch_{epoch:04d}"
        target = f"{self.root}/{folder}"
        retrying(lambda: self.fs.create_dir(target, recursive=True), f"uploading {target}")
        for name in BEST_FILES:
            if (out_dir / name).is_file():
                upload(out_dir / name, self.fs, f"{target}/{name}")
        previous, self.record = (
            self.record,
            BestRecord(epoch, self.metric, self.mode, value, folder, ci),
        )
        write_bytes(self.fs, f"{self.root}/{BEST_FILE}", json.dumps(asdict(self.record)).encode())
        if previous is not None and previous.folder != folder:
            try:
                retrying(
                    lambda: self.fs.delete_dir(f"{self.root}/{previous.folder}"),
                    f"deleting {self.root}/{previous.folder}",
                )
            except (
                FileNotFoundError,
                OSError,
            ) as err:  # a leftover folder costs space, not correctness
                log.warning(
                    "%s: could not delete the previous best %s: %s",
                    self.run_name,
                    previous.folder,
                    err,
                )
        log.info(
            "%s: best %s so far at epoch %d (%.4g), kept in %s",
            self.run_name,
            self.metric,
            epoch,
            value,
            self.storage.run_uri(self.run_name, BEST_DIR),
        )
