"""A PBT trial's process: continue from a donor's checkpoint when PBT says so, and say where each
state came from.

`PbtSession` is the one-worker trial session (orchestrator.trial.session.TrialSession) of a task
swept with `scheduler: pbt` (orchestrator.search.schedulers.pbt explains the scheme). It differs in
three ways:

- what it continues from: the Tune checkpoint it is given is a pointer (`pbt.json`). A pointer of
  its own trial (a retry, a resumed sweep) means its own newest stored checkpoint, as for any trial;
  a pointer of another trial is an exploit: that trial's stored checkpoint, after which the trial's
  own folder is emptied (those checkpoints belong to the lineage it leaves);
- what it reports: each epoch's `hp/<option>` values and lineage, and with each checkpoint epoch a
  pointer to the checkpoint it stored, as the Tune checkpoint that PBT hands to exploiting trials;
- what it records in MLflow (through its recorder, orchestrator.tracking.recorder): the `hp/` values
  per epoch, and at an exploit `pbt/lineage.json` and the `cyclegan.pbt.*` tags on the trial's run.
"""

from __future__ import annotations

import contextlib
import json
import logging
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

from orchestrator.search.schedulers.pbt import (
    DONOR_TAG,
    EXPLOITS_TAG,
    LINEAGE_ARTIFACT,
    LINEAGE_KEY,
    POINTER_FILE,
    hyperparameters,
    new_lineage,
)
from orchestrator.storage.checkpoints import METRICS_FILE, StoredCheckpoints, download, read_bytes
from orchestrator.tracking.backends import open_trial_recorder
from orchestrator.tracking.context import TrackingContext
from orchestrator.tracking.recorder import TrialRecorder
from orchestrator.trial.session import TrialSession
from orchestrator.trial.spec import TrialSpec

log = logging.getLogger(__name__)


class LineageCheckpoints(StoredCheckpoints):
    """A run's stored checkpoints, as PBT trials read each other's: a named one, and the lineage
    each holds."""

    @contextlib.contextmanager
    def opened(self, name: str) -> Iterator[tuple[Path, str] | None]:
        """Checkpoint `name` as (a local folder, its URI), or the newest complete one when `name` is
        gone (rotated away by its run meanwhile); None when the run has none."""
        complete, _ = self._folders()
        if name not in complete:
            if not complete:
                yield None
                return
            name = complete[-1]
        uri = self.storage.run_uri(self.run_name, name)
        if self.storage.is_local:
            yield Path(self.root, name), uri
            return
        with tempfile.TemporaryDirectory(prefix="cyclegan-donor-") as tmp:
            download(self.fs, f"{self.root}/{name}", tmp)
            yield Path(tmp), uri

    def newest_pointer(self) -> dict | None:
        """The pointer stored with the newest complete checkpoint (its lineage), or None."""
        complete, _ = self._folders()
        if not complete:
            return None
        try:
            return json.loads(read_bytes(self.fs, f"{self.root}/{complete[-1]}/{POINTER_FILE}"))
        except (FileNotFoundError, OSError, ValueError):
            return None

    def clear(self) -> None:
        """Delete every checkpoint folder of the run (its best/ folder stays)."""
        complete, incomplete = self._folders()
        for name in complete + incomplete:
            self.fs.delete_dir(f"{self.root}/{name}")


def read_pointer(folder: Path) -> dict | None:
    path = folder / POINTER_FILE
    return json.loads(path.read_text()) if path.is_file() else None


class PbtSession(TrialSession):
    """The only rank of a one-worker PBT trial (see the module docstring)."""

    def __init__(
        self,
        spec: TrialSpec,
        trial_id: str,
        values: dict[str, Any],
        fields: list[str],
        tracking: TrackingContext | None = None,
    ):
        super().__init__(spec)
        self.stored = LineageCheckpoints(spec.storage, spec.name, spec.keep_checkpoints)
        self.trial_id, self.values = trial_id, values
        self.hp = hyperparameters(spec.config, fields)
        self.lineage = new_lineage(trial_id, values)
        self.recorder = LineageRecorder(tracking) if tracking else None
        # this start continues from another trial's checkpoint: MLflow hears of it at the first
        # report
        self.exploited = False

    @contextlib.contextmanager
    def checkpoint(self) -> Iterator[tuple[Path, str] | None]:
        from ray import tune

        given = tune.get_checkpoint()
        pointer = None
        if given is not None:
            with given.as_directory() as folder:
                pointer = read_pointer(Path(folder))
        if pointer is None or pointer["trial"] == self.trial_id:
            with (
                super().checkpoint() as found
            ):  # its own newest: it holds only the lineage the trial is on
                if found is not None:
                    self._continue(
                        (read_pointer(found[0]) or {}).get("lineage"), self._epoch_of(found[0])
                    )
                yield found
            return
        with self._exploit(pointer) as found:
            yield found

    @contextlib.contextmanager
    def _exploit(self, pointer: dict) -> Iterator[tuple[Path, str]]:
        donor = LineageCheckpoints(self.spec.storage, pointer["run"], self.spec.keep_checkpoints)
        own = (
            self.stored.newest_pointer()
        )  # where this trial was: its old values and its earlier exploits
        with donor.opened(pointer["folder"]) as found:
            if found is None:
                raise RuntimeError(
                    f"PBT: trial {pointer['trial']} has no stored checkpoint in "
                    f"{self.spec.storage.run_uri(pointer['run'])} "
                    "to continue from"
                )
            folder, uri = found
            kept = read_pointer(folder) or pointer
            epoch = int(kept["epoch"])
            self.stored.clear()
            before = (own or {}).get("lineage") or {}
            old = (before.get("schedule") or [{}])[-1].get("values")
            event = {
                "epoch": epoch + 1,
                "donor": kept["trial"],
                "donor_epoch": epoch,
                "old": old,
                "new": self.values,
                "checkpoint": uri,
            }
            ancestry = [s for s in kept["lineage"]["schedule"] if s["from_epoch"] <= epoch]
            self.lineage = {
                "exploits": list(before.get("exploits") or []) + [event],
                "schedule": ancestry
                + [{"trial": self.trial_id, "from_epoch": epoch + 1, "values": self.values}],
            }
            self.exploited = True
            log.info(
                "PBT: %s continues from trial %s's epoch %d with %s",
                self.trial_id,
                kept["trial"],
                epoch,
                self.values,
            )
            yield folder, uri

    def _continue(self, lineage: dict | None, epoch: int) -> None:
        """Carry on the lineage of the checkpoint this trial resumes; a new range when its values
        are not the last range's (a sweep resumed with the trial's config from before its last
        exploit)."""
        if not lineage:
            return
        self.lineage = lineage
        if lineage["schedule"][-1]["values"] != self.values:
            lineage["schedule"].append(
                {"trial": self.trial_id, "from_epoch": epoch + 1, "values": self.values}
            )

    @staticmethod
    def _epoch_of(folder: Path) -> int:
        pointer = read_pointer(folder)
        if pointer:
            return int(pointer["epoch"])
        return int(json.loads((folder / METRICS_FILE).read_text()).get("epoch", 0))

    def report(self, metrics: dict, folder: Path | None = None, name: str | None = None) -> None:
        from ray import tune

        if metrics:
            metrics.update(self.hp)
            metrics[LINEAGE_KEY] = json.dumps(self.lineage)
            if self.recorder is not None:
                self.recorder.record(
                    int(metrics.get("epoch", 0)), self.hp, self.lineage if self.exploited else None
                )
                self.exploited = False
        if folder is None or name is None:
            tune.report(metrics)
            return
        pointer = {
            "trial": self.trial_id,
            "run": self.spec.name,
            "folder": name,
            "epoch": metrics.get("epoch"),
            "lineage": self.lineage,
        }
        (folder / POINTER_FILE).write_text(json.dumps(pointer))
        self.stored.save(folder, name)
        with tempfile.TemporaryDirectory(prefix="cyclegan-pbt-pointer-") as tmp:
            Path(tmp, POINTER_FILE).write_text(json.dumps(pointer))
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(tmp))


class LineageRecorder:
    """The PBT part of a trial's record: `hp/` values per epoch, and the lineage at each exploit."""

    def __init__(self, tracking: TrackingContext):
        # The trial's own recorder (its listener) opened the record and samples the system metrics.
        self.tracking = replace(tracking, system_metrics=False)
        self.recorder: TrialRecorder | None = None

    def record(self, epoch: int, hp: dict[str, float], lineage: dict | None) -> None:
        self.recorder = self.recorder or open_trial_recorder(self.tracking)
        tags = {}
        if lineage is not None:
            self.recorder.log_artifact(lineage, LINEAGE_ARTIFACT)
            last = lineage["exploits"][-1]
            tags = {
                EXPLOITS_TAG: str(len(lineage["exploits"])),
                DONOR_TAG: f"{last['donor']}@{last['donor_epoch']}",
            }
        self.recorder.log_values(epoch, hp, tags)


def session_factory(
    trial_id: str, values: dict[str, Any], fields: list[str], tracking: TrackingContext | None
) -> Callable[[TrialSpec], PbtSession]:
    """What `orchestrator.trial.session.train_in_trial` builds its session with, for a PBT trial."""
    return lambda spec: PbtSession(spec, trial_id, values, fields, tracking)
