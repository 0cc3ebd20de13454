"""The real path, end to end: `ray job submit` of a manifest to a Ray cluster, data and checkpoints
in S3, tracking and the registry on an MLflow server, exactly as docs/cluster.md has a user do it.

On this machine: a `ray start --head` of its own (2 CPUs, token authentication disabled on both
sides), the moto S3 server holding two small synthetic datasets as prefixes, and `mlflow server`
(sqlite, artifacts in that S3). The job is submitted from a copy of the repository (what a user's
checkout holds: no .venv/, no runs/) with the repository's cluster/runtime_env.yaml, its env_vars
pointed at these servers as a user would edit them. Afterwards each task's `champion` is in the
registry and translates images. Every process the test starts is ended, also when it fails.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from PIL import Image

from conftest import free_port

REPO = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent            # the venv's bin/: python, ray
TASKS = {"submitted-colorshift": "colorshift", "submitted-stripes": "stripes"}
CREDS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1"}
JOB_TIMEOUT_S = 1200

pytestmark = pytest.mark.slow


def _clean_env() -> dict[str, str]:
    """This process's environment without anything that would point Ray, S3 or MLflow elsewhere:
    what the job gets must come from the runtime env it is submitted with."""
    drop = ("AWS_", "MLFLOW_", "RAY_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"   # `python` in the entrypoint is the venv's
    env["RAY_AUTH_MODE"] = "disabled"                        # Ray >= 2.59 would want a token otherwise
    return env


def _session_members(sid: int) -> list[int]:
    """Processes of session `sid`: the `ray start` we started with setsid and everything it spawned
    (Ray's workers get process groups of their own, but stay in the session)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()   # after "pid (comm)": state ppid pgrp session ...
        if int(fields[3]) == sid:
            pids.append(int(entry.name))
    return pids


def _end_session(proc: subprocess.Popen) -> None:
    """`ray start --block` ignores SIGTERM: end its process group, then whatever is left of its session."""
    sid = proc.pid
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(sid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(10)
            break
        except subprocess.TimeoutExpired:
            continue
    deadline = time.monotonic() + 15
    while (left := [p for p in _session_members(sid) if p != os.getpid()]) and time.monotonic() < deadline:
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.5)


@pytest.fixture
def ray_head():
    """`ray start --head` on free ports with its own temp dir (so it never becomes the machine's
    "current cluster" that other tests' `ray.init()` would find). Yields the job server's URL."""
    temp_dir = Path(tempfile.mkdtemp(prefix="rayjob-", dir="/tmp"))   # short: Ray's socket paths must fit
    dashboard = free_port()
    command = [str(BIN / "ray"), "start", "--head", "--block", "--num-cpus", "2", "--num-gpus", "0",
               "--port", str(free_port()), "--dashboard-port", str(dashboard), "--include-dashboard", "true",
               "--dashboard-host", "127.0.0.1", "--ray-client-server-port", str(free_port()),
               "--dashboard-agent-listen-port", str(free_port()), "--metrics-export-port", str(free_port()),
               "--temp-dir", str(temp_dir), "--disable-usage-stats"]
    log_file = temp_dir.with_suffix(".log")
    with open(log_file, "w") as log:
        proc = subprocess.Popen(command, env=_clean_env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{dashboard}"
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                pytest.fail(f"ray start exited with {proc.returncode}:\n{log_file.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(f"{url}/api/version", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the Ray job server did not come up at {url}:\n{log_file.read_text()[-3000:]}")
            time.sleep(0.5)
        yield url
    finally:
        _end_session(proc)
        shutil.rmtree(temp_dir, ignore_errors=True)
        log_file.unlink(missing_ok=True)


def _upload_datasets(s3_server: str, root: Path) -> dict[str, str]:
    """Two synthetic pairs (with ground truth) under s3://cyclegan-data/datasets/<kind>/; task -> data URI."""
    import boto3

    from cyclegan.synthetic import generate

    s3 = boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1", aws_access_key_id="testing",
                      aws_secret_access_key="testing")
    for bucket in ("cyclegan-data", "cyclegan-runs"):
        s3.create_bucket(Bucket=bucket)
    refs = {}
    for task, kind in TASKS.items():
        folder = generate(kind, root / kind, n_train=10, n_test=2, size=32, seed=0)
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                s3.upload_file(str(path), "cyclegan-data", f"datasets/{kind}/{path.relative_to(folder).as_posix()}")
        refs[task] = f"s3://cyclegan-data/datasets/{kind}"
    return refs


def _checkout_copy(target: Path) -> Path:
    """What a user's checkout holds: the files git tracks or would track (no .venv/, runs/, results/...)."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    return target


def _manifest(data: dict[str, str]) -> dict:
    return {
        "name": "job-submit-e2e",
        "description": "two tiny synthetic tasks submitted with ray job submit",
        "storage": "s3://cyclegan-runs/runs",
        "defaults": {
            "train": {"netG": "resnet_1blocks", "ngf": 8, "ndf": 8, "load_size": 32, "crop_size": 32, "n_epochs": 1,
                      "n_epochs_decay": 1, "num_threads": 0, "eval_metrics": "l1,psnr", "n_samples": 2, "print_freq": 5},
            "resources": {"workers": 1, "cpus_per_worker": 0.5},
        },
        "search": {"space": {"lambda_cyc": {"choice": [5, 10]}}, "num_samples": 2, "metric": "psnr",
                   "max_concurrent_trials": 2, "max_failures": 0},
        "tasks": [{"name": task, "data": ref} for task, ref in data.items()],
    }


def _ray(args: list[str], env: dict, cwd: Path, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run([str(BIN / "ray"), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.timeout(JOB_TIMEOUT_S + 600)
def test_ray_job_submit_of_a_manifest_registers_a_champion_per_task(ray_head, s3_server, mlflow_server, tmp_path):
    data = _upload_datasets(s3_server, tmp_path / "datasets")
    checkout = _checkout_copy(tmp_path / "checkout")
    (checkout / "experiments" / "job_submit_e2e.yaml").write_text(yaml.safe_dump(_manifest(data), sort_keys=False))
    # The user's one edit to the runtime env: env_vars pointing at their MLflow server and S3 endpoint.
    runtime_env = yaml.safe_load((checkout / "cluster" / "runtime_env.yaml").read_text())
    runtime_env["env_vars"] = {**runtime_env["env_vars"], **CREDS, "AWS_ENDPOINT_URL_S3": s3_server, "MLFLOW_S3_ENDPOINT_URL": s3_server,
                               "MLFLOW_TRACKING_URI": mlflow_server, "AWS_EC2_METADATA_DISABLED": "true"}
    (checkout / "cluster" / "runtime_env.yaml").write_text(yaml.safe_dump(runtime_env, sort_keys=False))

    env = _clean_env()
    job_id = f"cyclegan-e2e-{os.getpid()}"
    submit = ["job", "submit", "--address", ray_head, "--submission-id", job_id, "--working-dir", ".",
              "--runtime-env", "cluster/runtime_env.yaml", "--",
              "python", "-m", "orchestrator", "run", "experiments/job_submit_e2e.yaml"]
    try:
        result = _ray(submit, env, checkout, JOB_TIMEOUT_S)
    except subprocess.TimeoutExpired as err:
        logs = _ray(["job", "logs", "--address", ray_head, job_id], env, checkout, 60).stdout
        pytest.fail(f"the job did not finish within {JOB_TIMEOUT_S} s; its log ends:\n{logs[-6000:]}\n{err}")
    output = result.stdout + result.stderr
    status = _ray(["job", "status", "--address", ray_head, job_id], env, checkout, 60)
    assert result.returncode == 0 and "SUCCEEDED" in status.stdout + status.stderr, \
        f"ray job submit exited with {result.returncode}; status: {status.stdout}{status.stderr}\n{output[-8000:]}"
    assert "sweeping 2 task(s) of job-submit-e2e" in output

    _check_registry(mlflow_server, s3_server, data, tmp_path, env)


def _check_registry(mlflow_server: str, s3_server: str, data: dict[str, str], tmp_path: Path, env: dict) -> None:
    """Each task's champion exists, was trained on the task's data, and translates images; no run is left RUNNING."""
    from mlflow.tracking import MlflowClient

    client = MlflowClient(tracking_uri=mlflow_server, registry_uri=mlflow_server)
    experiment = client.get_experiment_by_name("job-submit-e2e")
    assert experiment is not None, "the job logged nothing to the MLflow server"
    running = client.search_runs([experiment.experiment_id], "attributes.status = 'RUNNING'")
    assert not running, f"runs left RUNNING after the job: {[r.info.run_name for r in running]}"

    cli_env = {**env, **CREDS, "MLFLOW_TRACKING_URI": mlflow_server, "MLFLOW_S3_ENDPOINT_URL": s3_server,
               "AWS_ENDPOINT_URL_S3": s3_server}
    for task in data:
        name = f"cyclegan-{task}"
        version = client.get_model_version_by_alias(name, "champion")   # raises if there is none
        assert version.status == "READY", f"{name} v{version.version}: {version.status}"
        inputs = tmp_path / "datasets" / TASKS[task] / "testA"
        out = tmp_path / "translated" / task
        result = subprocess.run([sys.executable, "-m", "orchestrator", "translate", "--model", f"models:/{name}@champion",
                                 "--input", str(inputs), "--output", str(out), "--tracking-uri", mlflow_server],
                                cwd=REPO, env=cli_env, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, f"translate with {name}@champion failed:\n{result.stdout}{result.stderr}"
        written = sorted(p.name for p in out.rglob("*.png"))
        assert written == sorted(p.name for p in inputs.glob("*.png")), f"{name}: translated {written}"
        for path in out.rglob("*.png"):
            assert Image.open(path).size == (32, 32)
    listing = subprocess.run([sys.executable, "-m", "orchestrator", "models", "list", "--tracking-uri", mlflow_server],
                             cwd=REPO, env=cli_env, capture_output=True, text=True, timeout=120)
    assert listing.returncode == 0, listing.stdout + listing.stderr
    for task in data:
        assert f"cyclegan-{task}" in listing.stdout, listing.stdout
