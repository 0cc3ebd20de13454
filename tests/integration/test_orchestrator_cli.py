"""`python -m orchestrator train` without a Ray run: help, option checks, storage validation (local
and moto S3), checkpoint staging and per-rank state, and how worker errors come back."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.fs as pafs
import pytest
import torch

from conftest import free_port, tiny_config
from cyclegan.commands.runner import run_cli
from cyclegan.errors import UserError
from cyclegan.model import CycleGAN
from cyclegan.trainer import Trainer
from orchestrator.commands import main
from orchestrator.config.resources import Resources, prepare_config
from orchestrator.storage.checkpoints import (
    WORKER_STATES,
    load_reported_metrics,
    load_resume_state,
    stage,
)
from orchestrator.storage.location import StorageError, parse_storage, validate_storage
from orchestrator.trial.ddp import (
    Collectives,
    consistency,
    decorrelate_pools,
    load_worker_state,
    make_wrap,
    synchronize_norms,
    worker_state,
)
from orchestrator.trial.ray_train import _failure

REPO = Path(__file__).resolve().parents[2]


def orchestrator_cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    environment = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    environment.pop("RAY_ADDRESS", None)
    return subprocess.run(
        [sys.executable, "-m", "orchestrator", *args],
        capture_output=True,
        text=True,
        env=environment,
        timeout=300,
    )


# -- the command line -----------------------------------------------------------------------------


def test_train_help_lists_the_ray_flags_and_every_cyclegan_flag(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for flag in (
        "--workers",
        "--gpus-per-worker",
        "--storage",
        "--name",
        "--max-failures",
        "--keep-checkpoints",
        "--resume-from",
        "--address",
        "--dataroot",
        "--netG",
        "--norm",
        "--batch_size",
        "--save_epoch_freq",
        "--lambda_identity",
    ):
        assert flag in text
    assert "--continue_train" not in text  # relaunching resumes; the flag would only confuse


def test_bad_local_storage_fails_before_ray_starts(tiny_dataset):
    started = time.monotonic()
    result = orchestrator_cli(
        "train", "--dataroot", str(tiny_dataset), "--storage", "/dev/null/runs", "--workers", "2"
    )
    assert result.returncode == 2
    assert "error: storage /dev/null/runs: cannot create or write this folder" in result.stderr
    assert "Traceback" not in result.stderr
    assert "Ray instance" not in result.stderr + result.stdout  # no Ray was started
    assert time.monotonic() - started < 120


@pytest.mark.parametrize(
    "args,message",
    [
        (["--workers", "0"], "error: --workers: 0; must be at least 1"),
        (
            ["--workers", "2", "--gpus-per-worker", "0.5"],
            "must be a whole number with more than one worker",
        ),
        (["--device", "cuda"], "error: --device cuda: the workers have no GPU"),
        (["--name", "a/b"], "error: --name 'a/b'"),
        (["--dataroot", "/no/such/data"], "/no/such/data"),
        (["--keep-checkpoints", "0"], "error: --keep-checkpoints 0: keep at least 1"),
        (["--resume-from", "{empty}"], "no latest_state.pt here"),
    ],
)
def test_option_errors_are_one_line_and_come_before_training(
    tiny_dataset, tmp_path, capsys, args, message
):
    (tmp_path / "empty").mkdir()
    args = [str(tmp_path / "empty") if a == "{empty}" else a for a in args]
    argv = [
        "train",
        "--dataroot",
        str(tiny_dataset),
        "--storage",
        str(tmp_path / "runs"),
        "--checkpoints_dir",
        str(tmp_path),
        *args,
    ]
    assert run_cli(main, argv) == 2
    assert message in capsys.readouterr().err


# -- storage ---------------------------------------------------------------------------------------


def test_local_storage_is_created_and_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    target = validate_storage("runs/sub")
    assert target.is_local and target.path == str(tmp_path / "runs" / "sub")
    assert (tmp_path / "runs" / "sub").is_dir()
    assert not list((tmp_path / "runs" / "sub").iterdir())  # the write probe is gone
    assert target.run_uri("exp") == str(tmp_path / "runs" / "sub" / "exp")


def test_storage_under_a_file_is_refused(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(
        StorageError, match=r"storage .*file/runs: cannot create or write this folder"
    ):
        validate_storage(str(tmp_path / "file" / "runs"))


def test_s3_storage_on_moto_is_checked_and_parsed_for_ray(s3_env):
    import boto3

    boto3.client("s3").create_bucket(Bucket="runs-ok")
    target = validate_storage("s3://runs-ok/cyclegan/")
    assert target.path == "runs-ok/cyclegan" and isinstance(target.filesystem, pafs.S3FileSystem)
    assert target.endpoint == s3_env["AWS_ENDPOINT_URL_S3"]
    assert (
        target.run_uri("exp", "checkpoint_epoch_0001")
        == "s3://runs-ok/cyclegan/exp/checkpoint_epoch_0001"
    )
    keys = [
        o["Key"] for o in boto3.client("s3").list_objects_v2(Bucket="runs-ok").get("Contents", [])
    ]
    assert not [k for k in keys if "write-check" in k]  # the probe object was deleted
    # The endpoint can also be written into the URI (the form Ray itself accepts).
    port = s3_env["AWS_ENDPOINT_URL_S3"].rsplit(":", 1)[1]
    inline = validate_storage(f"s3://runs-ok/x?endpoint_override=127.0.0.1:{port}&scheme=http")
    assert inline.endpoint == f"http://127.0.0.1:{port}"


def test_missing_bucket_is_named_with_the_endpoint(s3_env):
    with pytest.raises(StorageError) as error:
        validate_storage("s3://no-such-bucket/runs")
    assert "bucket 'no-such-bucket' does not exist at " + s3_env["AWS_ENDPOINT_URL_S3"] in str(
        error.value
    )


def test_unreachable_endpoint_fails_fast_naming_it(s3_env, monkeypatch):
    dead = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", dead)
    started = time.monotonic()
    with pytest.raises(StorageError, match=f"cannot reach the S3 endpoint {dead}"):
        validate_storage("s3://runs/cyclegan")
    assert time.monotonic() - started < 60


def test_unreachable_endpoint_from_the_cli(tiny_dataset, tmp_path, s3_env, monkeypatch, capsys):
    dead = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", dead)
    code = run_cli(
        main,
        [
            "train",
            "--dataroot",
            str(tiny_dataset),
            "--storage",
            "s3://runs/cyclegan",
            "--checkpoints_dir",
            str(tmp_path),
        ],
    )
    assert code == 2
    assert (
        f"error: storage s3://runs/cyclegan: cannot reach the S3 endpoint {dead}"
        in capsys.readouterr().err
    )


def test_storage_errors_never_show_credentials():
    with pytest.raises(StorageError) as error:
        parse_storage(
            "gs://AKIAIOSFODNN7EXAMPLE:wJalrXUtnFEMIK7MDENGbPxRfiCYEXAMPLEKEY@bucket/runs"
        )
    assert "wJalrXUtnFEMIK7MDENGbPxRfiCYEXAMPLEKEY" not in str(
        error.value
    ) and "AKIAIOSFODNN7EXAMPLE" not in str(error.value)
    assert "unsupported scheme gs://" in str(error.value)


# -- options for a Ray run -------------------------------------------------------------------------


def test_prepare_config_makes_paths_absolute_and_refuses_continue_train(
    tiny_dataset, tmp_path, monkeypatch
):
    monkeypatch.chdir(tiny_dataset.parent)
    cfg = prepare_config(
        tiny_config(tiny_dataset.name, "ckpts", cache_dir="cache"),
        Resources(workers=2),
        name="run1",
    )
    assert cfg.dataroot == str(tiny_dataset) and cfg.name == "run1"
    assert cfg.checkpoints_dir == str(tiny_dataset.parent / "ckpts") and cfg.cache_dir == str(
        tiny_dataset.parent / "cache"
    )
    with pytest.raises(UserError, match="--continue_train: not needed here"):
        prepare_config(tiny_config(tiny_dataset, tmp_path, continue_train=True), Resources())
    # A synthetic (or s3://) reference is resolved by the workers, not here.
    assert (
        prepare_config(
            tiny_config("synthetic://colorshift?size=32", tmp_path), Resources()
        ).dataroot
        == "synthetic://colorshift?size=32"
    )


def test_a_user_error_in_a_worker_comes_back_as_itself():
    from ray.train import WorkerGroupError
    from ray.train.v2._internal.exceptions import UserExceptionWithTraceback

    wrapped = UserExceptionWithTraceback(
        UserError("--dataroot s3://x/y: no trainA/"), "Traceback ...\nUserError: ..."
    )
    error = _failure(WorkerGroupError("failed", {1: wrapped}), "run", parse_storage("/tmp/runs"))
    assert (
        type(error) is UserError and str(error) == "--dataroot s3://x/y: no trainA/ (worker rank 1)"
    )
    other = _failure(
        WorkerGroupError("failed", {0: RuntimeError("boom")}), "run", parse_storage("/tmp/runs")
    )
    assert (
        other.exit_code == 1
        and "relaunch the same command" in str(other)
        and "/tmp/runs/run" in str(other)
    )


# -- checkpoints and per-rank state ----------------------------------------------------------------


def test_staged_checkpoint_holds_the_trainer_files_and_each_ranks_state(tiny_dataset, tmp_path):
    cfg = tiny_config(
        tiny_dataset,
        tmp_path,
        n_epochs=1,
        n_epochs_decay=0,
        pool_size=4,
        max_dataset_size=3,
        n_samples=1,
    )
    trainer = Trainer(cfg, show_progress=False)
    trainer.fit()
    states = [worker_state(trainer.model), worker_state(trainer.model)]
    folder = stage(
        tmp_path / "tiny",
        tmp_path / "staged" / "checkpoint_epoch_0001",
        states,
        metrics={"epoch": 1, "loss_G": 2.5},
    )
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [
            "config.json",
            "latest_state.pt",
            "latest_net_D_A.pth",
            "latest_net_D_B.pth",
            "latest_net_G_A.pth",
            "latest_net_G_B.pth",
            WORKER_STATES,
            "metrics.json",
        ]
    )
    assert load_reported_metrics(folder) == {"epoch": 1, "loss_G": 2.5}
    assert (
        load_reported_metrics(tmp_path / "tiny") == {}
    )  # a folder without them (older checkpoints)
    state, own = load_resume_state(folder, rank=1, world_size=2)
    assert state["epoch"] == 1 and torch.equal(
        own["pool_A"]["images"], states[1]["pool_A"]["images"]
    )
    assert (
        load_resume_state(folder, rank=0, world_size=3)[1] is None
    )  # other world size: rank 0's pools for all
    # The single-machine trainer continues from it as from its own folder.
    resumed = Trainer(
        tiny_config(
            tiny_dataset,
            tmp_path / "staged",
            name="checkpoint_epoch_0001",
            n_epochs=1,
            n_epochs_decay=1,
            continue_train=True,
            pool_size=4,
            max_dataset_size=3,
            n_samples=1,
        ),
        show_progress=False,
    )
    assert resumed.start_epoch == 2


def test_consistency_spots_replicas_that_differ_and_shards_that_overlap():
    same = [
        {"fingerprint": [1.0, 2.0], "shard": [0, 2, 4]},
        {"fingerprint": [1.0, 2.0], "shard": [1, 3, 0]},
    ]  # 0: padding
    assert consistency(same, dataset_size=5) == {
        "ddp_replicas_in_sync": True,
        "ddp_shard_overlap": 0,
        "ddp_shard_coverage": 1.0,
    }
    apart = [
        {"fingerprint": [1.0, 2.0], "shard": [0, 1]},
        {"fingerprint": [1.0, 2.5], "shard": [0, 1]},
    ]
    assert consistency(apart, dataset_size=4) == {
        "ddp_replicas_in_sync": False,
        "ddp_shard_overlap": 2,
        "ddp_shard_coverage": 0.5,
    }


def test_worker_state_round_trip_restores_pools_and_rng(tiny_dataset, tmp_path):
    cfg = tiny_config(tiny_dataset, tmp_path, pool_size=3)
    model = CycleGAN(cfg)
    model.pool_A.query(torch.randn(2, 3, 8, 8))
    saved = worker_state(model)
    expected = torch.rand(3)
    other = CycleGAN(cfg)
    load_worker_state(other, saved)
    assert torch.equal(other.pool_A.images[1], model.pool_A.images[1]) and torch.equal(
        torch.rand(3), expected
    )
    # Fresh DDP ranks draw their pools' choices from streams of their own; rank 0 keeps the
    # single-machine one.
    ranks = [CycleGAN(cfg) for _ in range(2)]
    for rank, m in enumerate(ranks):
        decorrelate_pools(m, rank)
    assert torch.equal(
        ranks[0].pool_A.generator.get_state(), CycleGAN(cfg).pool_A.generator.get_state()
    )
    assert not torch.equal(
        ranks[0].pool_A.generator.get_state(), ranks[1].pool_A.generator.get_state()
    )


def test_single_process_needs_no_ddp_and_cpu_batch_norm_stays_local(tiny_dataset, tmp_path):
    cfg = tiny_config(tiny_dataset, tmp_path, norm="batch")
    assert make_wrap(cfg, torch.device("cpu"), world_size=1) is None
    assert Collectives(0, 1).gather_to_main("x") == ["x"]
    model = CycleGAN(cfg)
    on_cpu = synchronize_norms(model.discriminators, cfg, torch.device("cpu"))
    assert not any(isinstance(m, torch.nn.SyncBatchNorm) for m in on_cpu.modules())
    params = list(model.discriminators.parameters())
    on_gpu = synchronize_norms(
        model.discriminators, cfg, torch.device("cuda")
    )  # conversion needs no GPU, only its forward
    assert any(isinstance(m, torch.nn.SyncBatchNorm) for m in on_gpu.modules())
    assert [id(p) for p in on_gpu.parameters()] == [
        id(p) for p in params
    ]  # the optimizer's parameters, still


def test_validate_and_run_refuse_a_task_that_evaluates_dino_struct_without_its_weights(
    tmp_path, monkeypatch, capsys
):
    """The weights are a local file, never downloaded: a task that ranks or constrains by
    dino_struct is refused before anything starts, saying where the file goes."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.delenv("CYCLEGAN_DINO_WEIGHTS", raising=False)
    manifest = tmp_path / "m.yaml"
    manifest.write_text(
        "name: weights\ntasks:\n  - {name: a, data: 'synthetic://colorshift?size=32'}\n"
        "search:\n  metric: psnr\n  constraints: [{metric: dino_struct, baseline_factor: 1.2}]\n"
    )
    expected = tmp_path / "torch" / "hub" / "checkpoints" / "dino_vitbase8_pretrain.pth"
    for command in (["validate", "--offline"], ["run", "--offline", "--dry-run"]):
        assert run_cli(main, [*command, str(manifest)]) == 2
        err = capsys.readouterr().err
        assert "tasks[0] (a): dino_struct needs" in err and str(expected) in err, err
        assert "Traceback" not in err
    weights = tmp_path / "dino.pth"
    weights.write_bytes(b"found, not loaded by validate")
    monkeypatch.setenv("CYCLEGAN_DINO_WEIGHTS", str(weights))
    assert run_cli(main, ["validate", "--offline", str(manifest)]) == 0, capsys.readouterr().err
