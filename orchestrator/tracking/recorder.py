"""What a trial records, whatever the tracking backend: the `TrialRecorder` interface.

The trial side (orchestrator.trial.session's listener, the PBT lineage in
orchestrator.trial.pbt_session) gets its recorder from
orchestrator.tracking.backends.open_trial_recorder and knows nothing of MLflow. The MLflow
implementation is orchestrator.tracking.mlflow_recorder.MlflowTrialRecorder. A second tracking
backend is one new class implementing `TrialRecorder`'s methods (subclass it to inherit the helpers
built on them) plus one line in `open_trial_recorder` choosing it (for instance by the context's URI
scheme).

No mlflow import here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Protocol

from cyclegan.errors import UserError
from cyclegan.run_files import LATEST, NETWORK_FILES, network_file
from orchestrator.redact import mask_value

BEST_EPOCH_TAG = (
    "cyclegan.best_epoch"  # on a trial's run: its best epoch so far (orchestrator.storage.best)
)
BEST_CHECKPOINT_TAG = "cyclegan.best_checkpoint"  # where storage keeps the best epoch's generators
GENERATOR_FILES = (network_file(LATEST, "G_A"), network_file(LATEST, "G_B"))
# the sample grids, one per epoch (MLflow also shows them as an image series of this name)
SAMPLES_FOLDER = "samples"
CHECKPOINTS_FOLDER = "checkpoints"
CONFIG_ARTIFACT = "config.json"  # a trial's whole training configuration (masked)


def masked_config(config: Mapping[str, Any]) -> dict[str, Any]:
    """A training configuration as stored beside a run: its text values masked."""
    return {k: mask_value(k, v) if isinstance(v, str) else v for k, v in config.items()}


class TrialRecorder(Protocol):
    """One trial's record: its dataset, each epoch's metrics, files, tags and how it ended.

    Open it with orchestrator.tracking.backends.open_trial_recorder, on rank 0 only. Reopening the
    record of a trial that ran before (a retry, a resumed sweep) appends to it: `log_epoch` keeps
    the first values of an epoch.
    """

    def log_dataset(self, reference: str, folder: str | Path) -> None:
        """The dataset as the trial's input: its masked reference and a digest of `folder`'s
        files."""
        ...

    def log_epoch(self, epoch: int, metrics: Mapping[str, Any]) -> bool:
        """Every numeric metric with `epoch` as its step (timings and rates in namespaces of their
        own, a run's constants once: orchestrator.tracking.naming); False (nothing logged) when the
        record already holds this epoch or a later one (after a resume)."""
        ...

    def log_values(
        self, step: int, values: Mapping[str, float], tags: Mapping[str, Any] | None = None
    ) -> None:
        """`values` at `step` even when the record holds that step (e.g. PBT's hyperparameters of an
        epoch trained again after an exploit), and `tags`."""
        ...

    def log_artifact(
        self, source: str | Path | Mapping[str, Any], path: str, step: int | None = None
    ) -> str:
        """Store a file or folder (or a mapping, as a JSON document) as artifact `path`; with
        `step`, the file is that epoch's image. Returns `path`."""
        ...

    def set_tags(self, tags: Mapping[str, Any]) -> None:
        """Set tags (masked); None values are left out."""
        ...

    def close(self) -> None:
        """Stop what the recorder runs in the background; the record stays open (the driver ends
        it)."""
        ...

    def finish(self, status: str = "FINISHED") -> None:
        """End the record with `status`: FINISHED, FAILED or KILLED."""
        ...

    # -- built on the methods above ----------------------------------------------------------
    def mark_best_epoch(
        self,
        epoch: int,
        directory: str | Path | None = None,
        config: Mapping[str, Any] | None = None,
        stored: str | None = None,
    ) -> None:
        """The trial's best epoch so far (its generators are kept in storage:
        orchestrator.storage.best): tagged, with `stored` (that folder's URI) as
        `cyclegan.best_checkpoint`, and, given the run's `directory`, its generators (and `config`)
        as the run's `checkpoints/best/`, so the best weights of every trial are in MLflow."""
        self.set_tags({BEST_EPOCH_TAG: str(epoch), BEST_CHECKPOINT_TAG: stored})
        if directory is not None:
            self.log_checkpoint(directory, "best", epoch, config, files=GENERATOR_FILES)

    def log_sample_grid(self, epoch: int, image: str | Path) -> str:
        """A sample grid as `samples/epoch_NNN.png`, the image of step `epoch`; returns the artifact
        path."""
        return self.log_artifact(
            Path(image),
            f"{SAMPLES_FOLDER}/epoch_{epoch:03d}{Path(image).suffix or '.png'}",
            step=epoch,
        )

    def log_checkpoint(
        self,
        directory: str | Path,
        kind: str = "final",
        epoch: int | None = None,
        config: Mapping[str, Any] | None = None,
        files: Iterable[str] = NETWORK_FILES,
    ) -> str:
        """A checkpoint's network files (and the masked training `config` as config.json) under
        `checkpoints/<kind>/` (kind: final or best; a later call replaces the files). Returns the
        folder.

        Args:
            directory: the folder holding the network files.
            kind: `final` or `best`.
            epoch: the checkpoint's epoch, tagged `cyclegan.checkpoint.<kind>.epoch`.
            config: the trial's training config, stored beside the files.
            files: which network files to store, those present.
        """
        directory, folder = Path(directory), f"{CHECKPOINTS_FOLDER}/{kind}"
        present = [directory / name for name in files if (directory / name).is_file()]
        if not present:
            raise UserError(f"{directory}: no checkpoint files ({', '.join(files)}) to log")
        for path in present:
            self.log_artifact(path, f"{folder}/{path.name}")
        if config is not None:
            self.log_artifact(masked_config(config), f"{folder}/{CONFIG_ARTIFACT}")
        if epoch is not None:
            self.set_tags({f"cyclegan.checkpoint.{kind}.epoch": str(epoch)})
        return folder
