"""Under `ray job submit` the job's working directory is temporary: the embedded defaults (./runs,
sqlite:///./mlflow.db) would put a sweep's checkpoints and MLflow store where Ray deletes them.
`orchestrator run` refuses such a run before anything starts, saying what to set."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from cyclegan.commands.runner import run_cli
from orchestrator.commands import main
from orchestrator.sweep.job_dir import JOB_ENV_VAR

MANIFEST = """\
name: in-a-job
defaults:
  train: {netG: resnet_1blocks, ngf: 8, ndf: 8, load_size: 32, crop_size: 32, n_epochs: 1, n_epochs_decay: 0}
search: {space: {lambda_cyc: {choice: [5, 10]}}, num_samples: 1, metric: psnr}
tasks:
  - {name: colorshift, data: "synthetic://colorshift?size=32&n_train=4&n_test=2&seed=0"}
"""  # noqa: E501 (test data as the user writes it)


@pytest.fixture
def job_dir(tmp_path, monkeypatch) -> Path:
    """A driver as Ray's job supervisor starts it: in the uploaded checkout's copy, with the job's
    config in its env."""
    folder = (
        tmp_path / "session_x" / "runtime_resources" / "working_dir_files" / "_ray_pkg_0123abcd"
    )
    (folder / "experiments").mkdir(parents=True)
    (folder / "experiments" / "in-a-job.yaml").write_text(textwrap.dedent(MANIFEST))
    monkeypatch.chdir(folder)
    monkeypatch.setenv(JOB_ENV_VAR, '{"runtime_env": {}}')
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    return folder


def _run(*args: str, capsys) -> tuple[int, str]:
    code = run_cli(main, ["run", "experiments/in-a-job.yaml", "--offline", *args])
    captured = capsys.readouterr()
    return code, captured.out + captured.err


def test_a_job_with_the_default_storage_and_tracking_is_refused_before_anything_starts(
    job_dir, capsys
):
    code, out = _run(capsys=capsys)
    assert code == 2, out
    assert "Ray deletes it" in out and str(job_dir) in out
    assert "set `storage:` in experiments/in-a-job.yaml (or pass --storage)" in out
    assert "MLFLOW_TRACKING_URI in the env_vars of cluster/runtime_env.yaml" in out
    assert "Traceback" not in out
    assert (
        not (job_dir / "mlflow.db").exists() and not (job_dir / "runs").exists()
    )  # nothing was created


def test_a_job_with_lasting_outputs_is_not_refused_and_a_driver_run_by_hand_never_is(
    job_dir, tmp_path, capsys, monkeypatch
):
    from orchestrator.sweep.job_dir import check_outputs_outlast_the_job

    manifest = Path("experiments/in-a-job.yaml")
    check_outputs_outlast_the_job("s3://bucket/runs", "http://mlflow:5000", manifest)
    check_outputs_outlast_the_job(
        str(tmp_path / "shared" / "runs"), f"sqlite:///{tmp_path}/shared/mlflow.db", manifest
    )
    with pytest.raises(Exception, match="the MLflow store would be") as err:
        check_outputs_outlast_the_job(
            "s3://bucket/runs", f"sqlite:///{job_dir}/mlflow.db", manifest
        )
    assert "storage" not in str(err.value).split(", so\n", 1)[1]  # only what is wrong is named
    monkeypatch.delenv(JOB_ENV_VAR)  # the same folder, but not a Ray job
    check_outputs_outlast_the_job("./runs", f"sqlite:///{job_dir}/mlflow.db", manifest)
