"""TrialSpec: one run's request, checked at its birth (no I/O beyond the config's own checks)."""

from __future__ import annotations

import dataclasses
import pickle

import pytest

from conftest import tiny_config
from cyclegan.errors import UserError
from orchestrator.config.resources import Resources
from orchestrator.storage.best import Ranking
from orchestrator.storage.location import Storage
from orchestrator.tracking.context import TrackingContext
from orchestrator.trial.spec import TrialSpec


def test_the_name_renames_the_run_and_paths_become_absolute(tiny_dataset, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    spec = TrialSpec(tiny_config(tiny_dataset, "ckpts"), Resources(workers=2), "runs", name="h2z")
    assert spec.name == spec.config.name == "h2z"
    assert isinstance(spec.storage, Storage) and spec.storage.path == str(tmp_path / "runs")
    assert spec.run_uri == str(tmp_path / "runs" / "h2z")
    assert spec.output_dir == tmp_path / "ckpts" / "h2z"
    assert not (
        tmp_path / "runs"
    ).exists()  # parsed, not checked: the driver checks before it starts


def test_without_a_name_the_run_is_the_configs(tiny_dataset, tmp_path):
    spec = TrialSpec(tiny_config(tiny_dataset, tmp_path), storage=str(tmp_path / "runs"))
    assert (
        spec.name == "tiny"
        and spec.resources == Resources()
        and spec.max_failures == 0
        and spec.callbacks == ()
    )


@pytest.mark.parametrize(
    "options,message",
    [
        (dict(keep_checkpoints=0), "--keep-checkpoints 0: keep at least 1"),
        (dict(max_failures=-2), "--max-failures -2: use 0 or more"),
        (dict(name="a/b"), "--name 'a/b'"),
        (dict(storage="gs://bucket/runs"), "unsupported scheme gs://"),
    ],
)
def test_bad_options_are_refused_at_birth(tiny_dataset, tmp_path, options, message):
    with pytest.raises(UserError, match=message):
        TrialSpec(
            tiny_config(tiny_dataset, tmp_path), **{"storage": str(tmp_path / "runs"), **options}
        )


def test_it_is_frozen_and_travels_to_ray_processes_whole(tiny_dataset, tmp_path):
    tracking = TrackingContext("sqlite:///m.db", "1", "parent", trial="t1")
    spec = TrialSpec(
        tiny_config(tiny_dataset, tmp_path),
        storage=str(tmp_path / "runs"),
        ranking=Ranking("fid", "min"),
        tracking=tracking,
        keep_checkpoints=3,
    )
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.keep_checkpoints = 5
    again = pickle.loads(pickle.dumps(spec))
    assert again == spec and again.tracking.trial == "t1" and again.ranking == Ranking("fid", "min")


def test_resume_from_a_folder_without_a_state_file_is_refused(tiny_dataset, tmp_path):
    (tmp_path / "empty").mkdir()
    spec = TrialSpec(
        tiny_config(tiny_dataset, tmp_path),
        storage=str(tmp_path / "runs"),
        resume_from=str(tmp_path / "empty"),
    )
    with pytest.raises(UserError, match="no latest_state.pt here"):
        spec.resume_checkpoint()
    assert dataclasses.replace(spec, resume_from=None).resume_checkpoint() is None
