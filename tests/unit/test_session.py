"""A one-worker trial's run from its TrialSpec (`train_in_trial`), in this process, without Tune:
its checkpoints rotate in storage, a relaunch continues from them, and `resume_from` starts a new
run from another run's checkpoint."""

from __future__ import annotations

from pathlib import Path

from conftest import tiny_config
from orchestrator.trial.session import TrialSession, train_in_trial
from orchestrator.trial.spec import TrialSpec


class RecordingSession(TrialSession):
    """A TrialSession that records its reports instead of sending them to Tune."""

    reports: list[dict] = []

    def report(self, metrics: dict, folder: Path | None = None, name: str | None = None) -> None:
        if folder is not None and name is not None:
            self.stored.save(folder, name)
        RecordingSession.reports.append(metrics)


def test_a_trial_trains_from_its_spec_and_a_relaunch_continues_from_its_checkpoint(
    tiny_dataset, tmp_path
):
    spec = TrialSpec(
        tiny_config(tiny_dataset, tmp_path / "out", save_epoch_freq=1),
        storage=str(tmp_path / "runs"),
        name="t1",
        keep_checkpoints=1,
    )
    RecordingSession.reports.clear()
    first = train_in_trial(spec, RecordingSession)
    assert (
        first["start_epoch"] == 1
        and not first["already_complete"]
        and first["metrics"]["epoch"] == 2
    )
    assert [r["epoch"] for r in RecordingSession.reports] == [1, 2]
    assert sorted(p.name for p in (tmp_path / "runs" / "t1").glob("checkpoint_epoch_*")) == [
        "checkpoint_epoch_0002"
    ]

    again = train_in_trial(spec, RecordingSession)
    assert again["already_complete"] and again["metrics"]["epoch"] == 2

    # Another run, started from t1's last checkpoint: one more epoch to its schedule of 3.
    longer = TrialSpec(
        tiny_config(tiny_dataset, tmp_path / "out", n_epochs=2),
        storage=str(tmp_path / "runs"),
        name="t2",
        resume_from=str(tmp_path / "runs" / "t1" / "checkpoint_epoch_0002"),
    )
    resumed = train_in_trial(longer, RecordingSession)
    assert (
        resumed["start_epoch"] == 3
        and resumed["metrics"]["epoch"] == 3
        and resumed["metrics"]["resumed_from_epoch"] == 2
    )
