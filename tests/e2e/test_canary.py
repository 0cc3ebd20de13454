"""Canary values in every credential variable and in the storage URI: after a small sweep, none of
them appears in anything the run wrote or printed (storage, the MLflow store and its artifacts, the
results, stdout and stderr, Ray's session logs).

The sweep runs in a subprocess with a private Ray whose temp dir (RAY_TMPDIR) is this test's, so
every log Ray writes is searched."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import boto3
import pytest
from botocore.config import Config

REPO = Path(__file__).resolve().parents[2]
CANARIES = {
    name: f"canary{i}{uuid.uuid4().hex[:10]}"
    for i, name in enumerate(
        (
            "AWS_SECRET_ACCESS_KEY",
            "AWS_SESSION_TOKEN",
            "MLFLOW_TRACKING_PASSWORD",
            "MLFLOW_TRACKING_TOKEN",
            "uri_password",
        )
    )
}

MANIFEST = """\
name: canary
storage: "s3://canaryuser:{password}@canary-runs/sweeps"  # endpoint: $AWS_ENDPOINT_URL_S3
defaults:
  train: {{netG: resnet_1blocks, ngf: 8, ndf: 8, load_size: 32, crop_size: 32, n_epochs: 1, n_epochs_decay: 0, num_threads: 0}}
  resources: {{workers: 1, cpus_per_worker: 0.5}}
search:
  metric: cycle_l1
tasks:
  - {{name: only, data: "synthetic://colorshift?size=32&n_train=4&n_test=1&seed=0"}}
"""  # noqa: E501 (test data as the user writes it)


def _leaks(data: bytes, where: str) -> list[str]:
    return [f"{name} in {where}" for name, value in CANARIES.items() if value.encode() in data]


def _files(root: Path):
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            yield path


@pytest.mark.slow
def test_no_canary_survives_a_sweep(s3_server, tmp_path):
    s3 = boto3.client(
        "s3",
        endpoint_url=s3_server,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(s3={"addressing_style": "path"}),
    )
    s3.create_bucket(Bucket="canary-runs")
    (tmp_path / "m.yaml").write_text(MANIFEST.format(password=CANARIES["uri_password"]))
    # A short RAY_TMPDIR: Ray's socket paths must stay under the OS limit.
    ray_tmp = Path(tempfile.mkdtemp(prefix="rcan-", dir="/tmp"))
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "RAY_TMPDIR": str(ray_tmp),
        "RAY_AUTH_MODE": "disabled",
        "RAY_ADDRESS": "",
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path}/mlflow.db",
        "CYCLEGAN_CACHE_DIR": str(tmp_path / "cache"),
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL_S3": s3_server,
        "MLFLOW_S3_ENDPOINT_URL": s3_server,
        "AWS_EC2_METADATA_DISABLED": "true",
        "PYTHONUNBUFFERED": "1",
        "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.5",
        "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
        **{k: v for k, v in CANARIES.items() if k != "uri_password"},
    }
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "orchestrator", "run", "m.yaml"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            timeout=600,
        )
        output = proc.stdout + proc.stderr
        assert proc.returncode == 0, output.decode(errors="replace")[-4000:]
        leaks = _leaks(output, "stdout/stderr")
        local = [
            (path, f"{path.relative_to(tmp_path)}")
            for path in _files(tmp_path)
            if path.name != "m.yaml"
        ]  # not our input
        ray_files = [(path, f"ray:{path.relative_to(ray_tmp)}") for path in _files(ray_tmp)]
        assert any("runtime_env" in name for _, name in ray_files) or any(
            "session_" in name for _, name in ray_files
        )
        for path, name in local + ray_files:
            leaks += _leaks(path.read_bytes(), name)
        keys = [o["Key"] for o in s3.list_objects_v2(Bucket="canary-runs").get("Contents", [])]
        assert any(key.endswith("latest_state.pt") for key in keys), (
            keys
        )  # the storage really was used
        for key in keys:
            leaks += _leaks(
                s3.get_object(Bucket="canary-runs", Key=key)["Body"].read(),
                f"s3://canary-runs/{key}",
            )
        assert (tmp_path / "mlflow.db").is_file() and (
            tmp_path / "results" / "canary.json"
        ).is_file()
        assert not leaks, leaks
    finally:
        shutil.rmtree(ray_tmp, ignore_errors=True)
