"""Shared fixtures. Servers (moto, MLflow, Ray) are started by the tests that need them."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from cyclegan.config import TrainConfig
from cyclegan.sources.synthetic import generate

os.environ.setdefault("OMP_NUM_THREADS", "2")


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory) -> Path:
    """A small colorshift pair: 12 train and 4 test images per domain, 32x32."""
    return generate(
        "colorshift",
        tmp_path_factory.mktemp("tiny") / "colorshift",
        n_train=12,
        n_test=4,
        size=32,
        seed=0,
    )


def tiny_config(dataroot: Path, out: Path, **overrides) -> TrainConfig:
    """A CycleGAN small enough to train in seconds on two CPU cores."""
    values = dict(
        dataroot=str(dataroot),
        checkpoints_dir=str(out),
        name="tiny",
        netG="resnet_2blocks",
        ngf=8,
        ndf=8,
        load_size=32,
        crop_size=32,
        n_epochs=1,
        n_epochs_decay=1,
        num_threads=0,
        device="cpu",
        print_freq=5,
        n_samples=2,
        seed=0,
    )
    values.update(overrides)
    return TrainConfig(**values)


def tune_failures(runs: Path, experiment: str, task: str) -> dict[str, int]:
    """Per trial of `task`, the failures Tune counted (each one a retry), from the saved state of
    the sweep's Tune run (one run for the manifest's task selection:
    `runs/<experiment>/tune/<selection>/`)."""
    failures = {}
    for state in sorted((runs / experiment / "tune").glob("*/experiment_state-*.json")):
        for spec, runtime in json.loads(state.read_text())["trial_data"]:
            trial = json.loads(spec)
            if trial["config"].get("task") == task:
                failures[trial["trial_id"]] = json.loads(runtime)["num_failures"]
    return failures


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def s3_server():
    """A real S3 API: moto in server mode on a free 127.0.0.1 port. Yields its endpoint URL.

    Credentials are dummies; pass them explicitly (or via `s3_env`) to whatever talks to it.
    """
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


def moto_client(endpoint: str):
    """A boto3 client of the moto server at `endpoint` (dummy credentials, path-style), for
    setting up buckets and objects."""
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
        config=Config(s3={"addressing_style": "path"}),
    )


@pytest.fixture(scope="session")
def s3_faults(s3_server):
    """A fault-injecting proxy in front of the moto server (tests/s3_faults.py), all rates 0 at
    first: a test sets the rates it wants with `set_rates(throttle=..., reset=..., short=...)`
    and talks to `url` instead of the server's."""
    from s3_faults import FaultProxy

    proxy = FaultProxy(s3_server, seed=0)
    try:
        yield proxy
    finally:
        proxy.close()


@pytest.fixture
def s3_env(s3_server, monkeypatch) -> dict:
    """Environment for boto3 (in this process and in subprocesses) to reach the moto server."""
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL_S3": s3_server,
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


# ------------------------------------------------------------------------------------------------
# MLflow: a real tracking server (sqlite backend, artifacts proxied to the moto S3 bucket) and one
# tiny trained run whose checkpoints the tracking and registry tests log and register.


def _stop_process_group(proc) -> None:
    import signal
    import subprocess

    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


def wait_for_http(url: str, proc, log_file: Path, timeout: float = 120.0) -> None:
    """Poll `url` until it answers 200; fail with the process log if it dies or takes too long."""
    import time
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(
                f"{proc.args[:3]} exited with {proc.returncode}:\n{log_file.read_text()[-3000:]}"
            )
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.5)
    pytest.fail(f"{url} did not come up within {timeout:g} s:\n{log_file.read_text()[-3000:]}")


@pytest.fixture(scope="session")
def mlflow_server(s3_server, tmp_path_factory):
    """`mlflow server` on a free 127.0.0.1 port, sqlite backend, artifacts proxied to
    s3://mlflow-artifacts/ on the moto server. Yields its URL; the whole process group is ended at
    the end (also on failure)."""
    import shutil
    import subprocess
    import sys
    import tempfile

    import boto3

    root = tmp_path_factory.mktemp("mlflow-server")
    # The database on tmpfs when there is one: every logged value is a commit, and fsyncs on a
    # shared disk make each request cost a few hundred ms.
    db_dir = Path(
        tempfile.mkdtemp(
            prefix="mlflow-test-", dir="/dev/shm" if os.path.isdir("/dev/shm") else None
        )
    )
    creds = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    boto3.client(
        "s3",
        endpoint_url=s3_server,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    ).create_bucket(Bucket="mlflow-artifacts")
    # No background job runner (huey workers): nothing here uses it, and it competes for the CPUs.
    env = {
        **os.environ,
        **creds,
        "MLFLOW_S3_ENDPOINT_URL": s3_server,
        "AWS_EC2_METADATA_DISABLED": "true",
        "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
    }
    port = free_port()
    log_file = root / "server.log"
    command = [
        str(Path(sys.executable).parent / "mlflow"),
        "server",
        "--backend-store-uri",
        f"sqlite:///{db_dir}/mlflow.db",
        "--artifacts-destination",
        "s3://mlflow-artifacts/artifacts",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    with open(log_file, "w") as log:
        proc = subprocess.Popen(
            command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        wait_for_http(f"http://127.0.0.1:{port}/health", proc, log_file)
        yield f"http://127.0.0.1:{port}"
    finally:
        _stop_process_group(proc)
        shutil.rmtree(db_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def tiny_trained(tiny_dataset, tmp_path_factory) -> Path:
    """One tiny CycleGAN trained for 2 epochs with evaluation: a folder with latest_net_*.pth,
    config.json, metrics.jsonl and samples/epoch_00N.png."""
    from cyclegan.trainer import Trainer

    out = tmp_path_factory.mktemp("tiny-trained")
    cfg = tiny_config(
        tiny_dataset, out, name="run", max_dataset_size=3, eval_freq=1, eval_metrics="l1,psnr"
    )
    Trainer(cfg, show_progress=False).fit()
    return out / "run"


# ------------------------------------------------------------------------------------------------
# Ray: one local instance for the whole session (starting one costs 10-20 s on two cores).

# Every Ray this suite starts gets these (its raylet passes them to every worker). Ray Train's
# controller polls its workers every 2 s by default, which costs a tiny run up to 4 s of waiting at
# its start and end; and each run's preemption watcher (spot instances: none here) is one more
# process to start.
RAY_TEST_TUNING = {
    "RAY_TRAIN_HEALTH_CHECK_INTERVAL_S": "0.5",
    "RAY_TRAIN_ENABLE_PREEMPTION_WATCHER": "0",
}
# The session's Ray (local storage only) also saves a sweep's state every second, not every 10 s: a
# driver killed just after a trial ended would have it restored as unfinished (harmless, but its
# Train run starts again to find out, ~15 s); not where sweeps write to S3, each save being an
# upload. And it starts no worker per CPU for its first driver (this process), which would mostly
# stay idle: the Tune and Train actors get workers of their own.
SESSION_RAY_TUNING = {
    **RAY_TEST_TUNING,
    "TUNE_GLOBAL_CHECKPOINT_S": "1",
    "RAY_prestart_worker_first_driver": "0",
}


@pytest.fixture(scope="session")
def ray_session(s3_server):
    """A private local Ray (`address="local"`: never a stale cluster from /tmp/ray), shut down at
    the end.

    Every worker and actor of this process's job (Ray Train controllers and workers included) gets
    the dummy AWS credentials and the moto endpoint, as `s3_env` gives them to this process; drivers
    in subprocesses can join with the yielded GCS address (token auth is off for them). 4 logical
    CPUs on two cores: a 2-worker run plus the actors a killed run leaves for a few seconds. The
    dashboard stays on: it serves the state API that Train V2's PlacementGroupCleaner polls every
    second (without it, that actor logs a warning each time and never learns that a killed run's
    controller is gone); Ray moves it off port 8265 when another Ray on the machine has that port.
    """
    import ray

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.update(SESSION_RAY_TUNING)
    env = {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL_S3": s3_server,
        "MLFLOW_S3_ENDPOINT_URL": s3_server,
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    ray.init(address="local", num_cpus=4, include_dashboard=True, runtime_env={"env_vars": env})
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()


def pytest_collection_modifyitems(items) -> None:
    """Whatever starts the session's Ray or an MLflow server is `slow`: `make test-fast` leaves it
    out."""
    for item in items:
        if {"ray_session", "mlflow_server"} & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)


def register_random_champion(root: Path, task: str) -> tuple[str, str]:
    """Tiny generators with random weights (resnet_2blocks, ngf 8) registered as the champion of
    `cyclegan-<task>` in a sqlite registry under `root`: (tracking URI, version)."""
    import torch
    from mlflow import MlflowClient

    from cyclegan.checkpoint import save_networks
    from cyclegan.networks import define_networks
    from orchestrator.tracking.registry import Candidate, register_best

    uri = f"sqlite:///{root}/mlflow.db"
    cfg = TrainConfig(
        dataroot=str(root), checkpoints_dir=str(root), netG="resnet_2blocks", ngf=8, ndf=8
    )
    torch.manual_seed(0)
    nets = define_networks(cfg)
    save_networks(root, "latest", {k: v for k, v in nets.items() if k.startswith("G")})
    client = MlflowClient(uri)
    run = client.create_run(client.create_experiment(task)).info.run_id
    client.set_terminated(run)
    candidate = Candidate(task, run, "psnr", 1.0, "max", config=cfg.to_dict(), checkpoint_dir=root)
    return uri, register_best(uri, candidate, promote="always").version


def make_random_inception(path: Path, seed: int = 0) -> Path:
    """An InceptionV3 weights file in the real file's format (a plain state_dict with
    torch-fidelity's keys, as torchvision's InceptionV3 with 1008 classes names them), random
    weights.

    Kaiming init rather than PyTorch's default, whose activations vanish through ~90 layers."""
    import torch
    from torchvision.models import inception_v3

    torch.manual_seed(seed)
    net = inception_v3(weights=None, aux_logits=False, init_weights=False, num_classes=1008)
    for module in net.modules():
        if isinstance(module, torch.nn.Conv2d):
            torch.nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(net.state_dict(), path)
    return path


def random_inception_file(tmp_path_factory) -> Path:
    """One random weights file per test session (shared by the test modules that need one)."""
    from cyclegan.metrics import INCEPTION_FILE

    path = tmp_path_factory.getbasetemp() / "random-inception" / INCEPTION_FILE
    return path if path.is_file() else make_random_inception(path)


def load_image_tensor(path: Path):
    """An image file as a uint8 CHW tensor."""
    import numpy as np
    import torch
    from PIL import Image

    return torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1).contiguous()


def loaded_after(code: str, watched: tuple[str, ...]) -> list[str]:
    """Which of `watched` a fresh interpreter has imported after running `code` (in the repository,
    with only the repository on its path)."""
    import subprocess
    import sys

    repo = Path(__file__).resolve().parents[1]
    report = f"print(json.dumps([m for m in {list(watched)!r} if m in sys.modules]))"
    probe = f"import json, sys\n{code}\n{report}"
    out = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        cwd=repo,
        timeout=120,
        env={"PYTHONPATH": str(repo), "PATH": "/usr/bin:/bin"},
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def sweep_in_process(loaded, tmp_path: Path, capsys):
    """Run a loaded manifest's sweep in this process (storage and results under `tmp_path`);
    returns what it printed and its results file, read back. It must succeed."""
    from orchestrator.sweep.experiment import run_experiment
    from orchestrator.sweep.options import RunOptions
    from orchestrator.sweep.results import load_results

    code = run_experiment(
        loaded,
        loaded.plans,
        RunOptions(storage=str(tmp_path / "runs"), results_dir=tmp_path / "results"),
    )
    out = capsys.readouterr().out
    assert code == 0, out
    return out, load_results(tmp_path / "results" / f"{loaded.manifest.name}.json")
