"""The real path, end to end: `ray job submit` of a manifest to a Ray cluster, data and checkpoints
in S3, tracking and the registry on an MLflow server, exactly as docs/cluster.md has a user do it.

On this machine: a `ray start --head` of its own (2 CPUs, token authentication on, as Ray >= 2.59
ships it: the token in a file of the test's own, named by RAY_AUTH_TOKEN_PATH, never
~/.ray/auth_token), the moto S3 server holding two small synthetic datasets as prefixes, and `mlflow
server` (sqlite, artifacts in that S3). The job is submitted from a copy of the repository (what a
user's checkout holds: no .venv/, no runs/) with the repository's cluster/runtime_env.yaml, its
env_vars pointed at these servers as a user would edit them. The job is stopped with `ray job stop`
while it trains (no MLflow run is left RUNNING) and submitted again with `--resume`: it finishes, in
the same runs, and each task's `champion` is in the registry and translates images.
Every process the tests start is ended, also when they fail.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import yaml
from PIL import Image

from conftest import RAY_TEST_TUNING, free_port
from cyclegan.commands.runner import run_cli

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent  # the venv's bin/: python, ray
# Two pairs that a tiny model learns in 4 epochs, so that each task's model beats its untranslated
# test images and becomes its champion (stripes does not: orchestrator.tracking.promotion).
DATASETS = {"colorshift": ("colorshift", 0), "recolored": ("colorshift", 1)}
CREDS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
JOB_TIMEOUT_S = 1200
# The cluster's token: what `ray get-auth-token --generate` would write to ~/.ray/auth_token, here
# in a file of this test run's own. `ray start`, the job drivers it starts and `ray job` all read
# it.
TOKEN_FILE = (
    Path(tempfile.gettempdir()) / f"rayjob-token-{os.getpid()}" / "auth_token"
)  # made by the ray_head fixture
_TEMP_DIRS: dict[
    str, Path
] = {}  # job server URL -> its Ray's temp dir, for the logs in failure messages

pytestmark = pytest.mark.slow


def _clean_env() -> dict[str, str]:
    """This process's environment without anything that would point Ray, S3 or MLflow elsewhere:
    what the job gets must come from the runtime env it is submitted with."""
    drop = ("AWS_", "MLFLOW_", "RAY_", "TUNE_")
    env = {k: v for k, v in os.environ.items() if not k.startswith(drop)}
    env["PATH"] = (
        f"{BIN}{os.pathsep}{env.get('PATH', '')}"  # `python` in the entrypoint is the venv's
    )
    env["RAY_AUTH_MODE"] = "token"  # as `ray start` has it by default since Ray 2.59
    env["RAY_AUTH_TOKEN_PATH"] = str(TOKEN_FILE)
    env.update(RAY_TEST_TUNING)  # quicker Ray Train polling (see conftest)
    return env


def _our_processes(sid: int, temp_dir: Path) -> list[int]:
    """What is left of this Ray: the processes of session `sid` (the `ray start` we started with
    setsid and everything it spawned; Ray's workers get process groups of their own but stay in
    the session), and those working in its temp dir (job drivers, which Ray starts in sessions of
    their own, run in the job's working dir under it)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            fields = (
                (entry / "stat").read_text().rsplit(")", 1)[1].split()
            )  # state ppid pgrp session ...
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if int(fields[3]) == sid or cwd == str(temp_dir) or cwd.startswith(f"{temp_dir}/"):
            pids.append(int(entry.name))
    return pids


def _end_ray(proc: subprocess.Popen, temp_dir: Path) -> None:
    """`ray start --block` ignores SIGTERM: end its process group (the GCS and the raylet take
    SIGTERM and end their workers), then `ray start` itself and whatever is left of it."""
    for sig, wait_s in ((signal.SIGTERM, 3), (signal.SIGKILL, 10)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(wait_s)
            break
        except subprocess.TimeoutExpired:
            continue
    deadline = time.monotonic() + 15
    while (left := _our_processes(proc.pid, temp_dir)) and time.monotonic() < deadline:
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(0.5)


@pytest.fixture(scope="module")
def ray_head():
    """`ray start --head` on free ports with its own temp dir (so it never becomes the machine's
    "current cluster" that other tests' `ray.init()` would find). Yields the job server's URL."""
    temp_dir = Path(
        tempfile.mkdtemp(prefix="rayjob-", dir="/tmp")
    )  # short: Ray's socket paths must fit
    TOKEN_FILE.parent.mkdir(mode=0o700, exist_ok=True)
    TOKEN_FILE.write_text(secrets.token_hex(32))
    TOKEN_FILE.chmod(0o600)
    dashboard = free_port()
    command = [
        str(BIN / "ray"),
        "start",
        "--head",
        "--block",
        "--num-cpus",
        "2",
        "--num-gpus",
        "0",
        "--port",
        str(free_port()),
        "--dashboard-port",
        str(dashboard),
        "--include-dashboard",
        "true",
        "--dashboard-host",
        "127.0.0.1",
        "--ray-client-server-port",
        str(free_port()),
        "--dashboard-agent-listen-port",
        str(free_port()),
        "--metrics-export-port",
        str(free_port()),
        "--temp-dir",
        str(temp_dir),
        "--disable-usage-stats",
    ]
    log_file = temp_dir.with_suffix(".log")
    with open(log_file, "w") as log:
        proc = subprocess.Popen(
            command, env=_clean_env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        url = f"http://127.0.0.1:{dashboard}"
        deadline = time.monotonic() + 180
        while True:
            if proc.poll() is not None:
                pytest.fail(
                    f"ray start exited with {proc.returncode}:\n{log_file.read_text()[-3000:]}"
                )
            try:
                with _get(f"{url}/api/version", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(
                    f"the Ray job server did not come up at {url}:\n{log_file.read_text()[-3000:]}"
                )
            time.sleep(0.5)
        _TEMP_DIRS[url] = temp_dir
        yield url
    finally:
        _end_ray(proc, temp_dir)
        shutil.rmtree(temp_dir, ignore_errors=True)
        log_file.unlink(missing_ok=True)
        shutil.rmtree(TOKEN_FILE.parent, ignore_errors=True)


def _get(url: str, timeout: float, token: str | None = None):
    """GET from the job server with the cluster's token, as `ray job` sends it."""
    token = TOKEN_FILE.read_text() if token is None else token
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)


@pytest.fixture(scope="module")
def datasets(s3_server, tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """Two synthetic pairs (with ground truth) uploaded as prefixes s3://cyclegan-data/datasets/<kind>/
    (and the bucket for the runs): the local folder and kind -> data URI."""  # noqa: E501 (test data as the user writes it)
    import boto3

    from cyclegan.sources.synthetic import generate

    root = tmp_path_factory.mktemp("job-datasets")
    s3 = boto3.client(
        "s3",
        endpoint_url=s3_server,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    for bucket in ("cyclegan-data", "cyclegan-runs"):
        s3.create_bucket(Bucket=bucket)
    refs = {}
    for name, (kind, seed) in DATASETS.items():
        folder = generate(kind, root / name, n_train=10, n_test=2, size=32, seed=seed)
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                s3.upload_file(
                    str(path),
                    "cyclegan-data",
                    f"datasets/{name}/{path.relative_to(folder).as_posix()}",
                )
        refs[name] = f"s3://cyclegan-data/datasets/{name}"
    return root, refs


def _checkout(target: Path, manifest: dict, s3_server: str, mlflow_server: str) -> Path:
    """A user's checkout: the files git tracks or would track (no .venv/, runs/, results/...), plus
    their manifest in experiments/ and their one edit to cluster/runtime_env.yaml: env_vars pointing
    at their MLflow server and S3 endpoint (here with the dummy credentials moto takes)."""
    listed = (
        subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=REPO,
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .split("\0")
    )
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)
    (target / "experiments" / f"{manifest['name']}.yaml").write_text(
        yaml.safe_dump(manifest, sort_keys=False)
    )
    runtime_env = yaml.safe_load((target / "cluster" / "runtime_env.yaml").read_text())
    runtime_env["env_vars"] = {
        **runtime_env["env_vars"],
        **CREDS,
        "AWS_ENDPOINT_URL_S3": s3_server,
        "MLFLOW_S3_ENDPOINT_URL": s3_server,
        "MLFLOW_TRACKING_URI": mlflow_server,
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    (target / "cluster" / "runtime_env.yaml").write_text(
        yaml.safe_dump(runtime_env, sort_keys=False)
    )
    return target


def _manifest(name: str, task_prefix: str, data: dict[str, str], epochs: int = 1) -> dict:
    """Two tiny tasks (one per synthetic kind), one trial each, ranked by PSNR to the ground truth.
    (Choosing among trials is the sweep tests' business; here every trial costs a whole Ray Train
    run twice.)"""
    return {
        "name": name,
        "description": "two tiny synthetic tasks submitted with ray job submit",
        "storage": "s3://cyclegan-runs/runs",
        "defaults": {
            "train": {
                "netG": "resnet_1blocks",
                "ngf": 8,
                "ndf": 8,
                "load_size": 32,
                "crop_size": 32,
                "n_epochs": epochs,
                "n_epochs_decay": epochs,
                "num_threads": 0,
                "eval_metrics": "l1,psnr",
                "n_samples": 2,
                "print_freq": 5,
            },
            "resources": {"workers": 1, "cpus_per_worker": 0.5},
        },
        # No baseline trial: one trial per task is what this test can afford (the sweep tests have
        # the baseline).
        "search": {
            "space": {"lambda_cyc": {"choice": [5, 10]}},
            "num_samples": 1,
            "metric": "psnr",
            "max_concurrent_trials": 2,
            "max_failures": 0,
            "baseline": False,
        },
        "tasks": [{"name": f"{task_prefix}-{kind}", "data": ref} for kind, ref in data.items()],
    }


# The first task's champion translates its test photos into S3 as the job's last step.
DELIVERED = "s3://cyclegan-runs/delivered/colorshift/"


def _ray(args: list[str], cwd: Path, timeout: float) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "ray"), *args],
        cwd=cwd,
        env=_clean_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _submit(
    ray_head: str, checkout: Path, job_id: str, manifest: str, *options: str, wait: bool = True
) -> str:
    """`ray job submit` as a user types it in their checkout; returns its output (fails the test if
    the job fails)."""
    command = [
        "job",
        "submit",
        "--address",
        ray_head,
        "--submission-id",
        job_id,
        "--working-dir",
        ".",
        "--runtime-env",
        "cluster/runtime_env.yaml",
        *([] if wait else ["--no-wait"]),
        "--",
        "python",
        "-m",
        "orchestrator",
        "run",
        f"experiments/{manifest}.yaml",
        *options,
    ]
    try:
        result = _ray(command, checkout, JOB_TIMEOUT_S)
    except subprocess.TimeoutExpired as err:
        logs = _ray(["job", "logs", "--address", ray_head, job_id], checkout, 60).stdout
        _ray(["job", "stop", "--address", ray_head, job_id], checkout, 120)
        pytest.fail(
            f"job {job_id} did not finish within {JOB_TIMEOUT_S} s; its log "
            f"ends:\n{logs[-6000:]}\n{err}"
        )
    output = result.stdout + result.stderr
    assert result.returncode == 0, (
        f"ray job submit exited with {result.returncode}:\n{output[-8000:]}"
    )
    if wait:
        assert _status(ray_head, job_id) == "SUCCEEDED", output[-8000:]
    return output


def _status(ray_head: str, job_id: str) -> str:
    """The job's status from the job server's REST API (what `ray job status` shows): PENDING,
    RUNNING, SUCCEEDED, FAILED or STOPPED."""
    try:
        with _get(f"{ray_head}/api/jobs/{job_id}", timeout=60) as response:
            return json.loads(response.read())["status"]
    except OSError as err:
        pytest.fail(
            f"the Ray job server {ray_head} does not answer ({err}); the head's logs "
            f"end:\n{_head_logs(ray_head)}"
        )


def _head_logs(ray_head: str) -> str:
    temp_dir = _TEMP_DIRS.get(ray_head)
    if temp_dir is None:
        return ""
    tails = []
    for name in ("dashboard.log", "dashboard.err", "raylet.err", "gcs_server.err"):
        for path in temp_dir.glob(f"session_*/logs/{name}"):
            tails.append(f"--- {name}\n" + path.read_text(errors="replace")[-2000:])
    log_file = temp_dir.with_suffix(".log")
    if log_file.exists():
        tails.append("--- ray start\n" + log_file.read_text(errors="replace")[-2000:])
    return "\n".join(tails)


def _client(mlflow_server: str):
    from mlflow.tracking import MlflowClient

    return MlflowClient(tracking_uri=mlflow_server, registry_uri=mlflow_server)


def _runs(mlflow_server: str, experiment_name: str) -> list:
    client = _client(mlflow_server)
    experiment = client.get_experiment_by_name(experiment_name)
    assert experiment is not None, (
        f"the job logged nothing to the MLflow experiment {experiment_name}"
    )
    return list(client.search_runs([experiment.experiment_id], max_results=1000))


def _cli(*args: str, capsys) -> tuple[int, str]:
    """`python -m orchestrator ARGS` as the user runs it after the job, in this process: its exit
    code and output."""
    from orchestrator.commands import main

    code = run_cli(main, list(args))
    captured = capsys.readouterr()
    return code, captured.out + captured.err


# ------------------------------------------------------------------------------------------------


@pytest.mark.timeout(2 * JOB_TIMEOUT_S + 600)
def test_ray_job_submit_stop_and_resubmit_with_resume_registers_a_champion_per_task(
    ray_head, datasets, s3_server, s3_env, mlflow_server, tmp_path, monkeypatch, capsys
):
    """One sweep, as a user runs it: submitted, stopped with `ray job stop` mid-training (no MLflow
    run is left RUNNING), submitted again with --resume (it finishes in the same runs); then each
    task's champion is in the registry and translates images."""
    root, data = datasets
    home_token = Path.home() / ".ray" / "auth_token"
    home_token_before = home_token.stat().st_mtime_ns if home_token.exists() else None
    # Token authentication is on: the job server turns away a request without the cluster's token.
    with pytest.raises(urllib.error.HTTPError) as refused:
        _get(f"{ray_head}/api/jobs/", timeout=30, token="")
    assert refused.value.code in (401, 403), refused.value
    manifest = _manifest("job-resume-e2e", "resumed", data, epochs=2)
    manifest["tasks"][0]["deliver"] = {"input": f"{data['colorshift']}/testA/", "output": DELIVERED}
    checkout = _checkout(tmp_path / "checkout", manifest, s3_server, mlflow_server)
    first, second = f"cyclegan-stop-{os.getpid()}", f"cyclegan-resume-{os.getpid()}"

    _submit(ray_head, checkout, first, "job-resume-e2e", wait=False)
    # Stop it once a trial has logged an epoch: the sweep is under way, with trial runs open.
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while True:
        client = _client(mlflow_server)
        experiment = client.get_experiment_by_name("job-resume-e2e")
        runs = client.search_runs([experiment.experiment_id]) if experiment else []
        if any(r.data.tags.get("cyclegan.role") == "trial" and r.data.metrics for r in runs):
            break
        status = _status(ray_head, first)
        assert status in ("PENDING", "RUNNING"), f"job {first} {status} before it could be stopped"
        assert time.monotonic() < deadline, (
            f"no trial of job {first} logged an epoch within {JOB_TIMEOUT_S} s"
        )
        time.sleep(3)
    stop = _ray(["job", "stop", "--address", ray_head, first], checkout, 300)
    assert stop.returncode == 0, stop.stdout + stop.stderr
    assert _status(ray_head, first) == "STOPPED"

    stopped = _runs(mlflow_server, "job-resume-e2e")
    assert not [r.info.run_name for r in stopped if r.info.status == "RUNNING"], (
        f"runs left RUNNING by the stopped job: "
        f"{[(r.info.run_name, r.info.status) for r in stopped]}"
    )
    parents = {
        r.info.run_id: r.info.status for r in stopped if r.data.tags.get("cyclegan.role") == "task"
    }
    assert len(parents) == 2 and set(parents.values()) <= {"KILLED", "FAILED"}, parents

    output = _submit(ray_head, checkout, second, "job-resume-e2e", "--resume")
    assert "sweeping 2 task(s) of job-resume-e2e" in output, output[-8000:]
    resumed = _runs(mlflow_server, "job-resume-e2e")
    assert not [r.info.run_name for r in resumed if r.info.status == "RUNNING"], output[-8000:]
    assert {r.info.run_id for r in resumed if r.data.tags.get("cyclegan.role") == "task"} == set(
        parents
    ), "--resume opened new parent runs instead of continuing the stopped ones"
    trials = [r for r in resumed if r.data.tags.get("cyclegan.role") == "trial"]
    assert len(trials) == 2, (
        f"2 tasks x 1 trial, each in one run: {[r.info.run_name for r in trials]}"
    )
    for trial in trials:  # lambda_cyc, drawn from its choices, set both cycle weights
        assert trial.data.params["lambda_A"] == trial.data.params["lambda_B"] and float(
            trial.data.params["lambda_A"]
        ) in (5, 10)
    client = _client(mlflow_server)
    # The user's shell after the job: S3 (from s3_env) and the MLflow server, whose artifacts are in
    # that S3
    monkeypatch.setenv("MLFLOW_TRACKING_URI", mlflow_server)
    # The in-process translate below starts a private local Ray: no token for it in ~/.ray, which
    # Ray would otherwise create (the other tests' Ray has the same setting).
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    monkeypatch.setenv("MLFLOW_S3_ENDPOINT_URL", s3_server)
    for kind in DATASETS:
        name = f"cyclegan-resumed-{kind}"
        version = client.get_model_version_by_alias(name, "champion")  # raises if there is none
        assert version.status == "READY", f"{name} v{version.version}: {version.status}"
        inputs = root / kind / "testA"
        out = tmp_path / "translated" / kind
        code, printed = _cli(
            "translate",
            "--model",
            f"models:/{name}@champion",
            "--input",
            str(inputs),
            "--output",
            str(out),
            "--tracking-uri",
            mlflow_server,
            capsys=capsys,
        )
        assert code == 0, f"translate with {name}@champion failed:\n{printed}"
        written = sorted(p.name for p in out.rglob("*.png"))
        assert written == sorted(p.name for p in inputs.glob("*.png")), (
            f"{name}: translated {written}"
        )
        for path in out.rglob("*.png"):
            assert Image.open(path).size == (32, 32)
    _check_delivery(client, root / "colorshift" / "testA", s3_server, output)
    code, listing = _cli("models", "list", "--tracking-uri", mlflow_server, capsys=capsys)
    assert code == 0, listing
    for kind in DATASETS:
        assert f"cyclegan-resumed-{kind}" in listing, listing
    assert (home_token.stat().st_mtime_ns if home_token.exists() else None) == home_token_before, (
        "the test wrote the user's ~/.ray/auth_token"
    )


def _check_delivery(client, inputs: Path, s3_server: str, output: str) -> None:
    """The champion the job left translated the delivery set into S3, each image at its key, and
    the report names that version."""
    import boto3

    champion = client.get_model_version_by_alias("cyclegan-resumed-colorshift", "champion")
    s3 = boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1", **_lower(CREDS))
    listed = s3.list_objects_v2(Bucket="cyclegan-runs", Prefix="delivered/colorshift/")
    keys = {o["Key"].removeprefix("delivered/colorshift/") for o in listed.get("Contents", [])}
    assert {k for k in keys if k.endswith(".png")} == {p.name for p in inputs.glob("*.png")}, keys
    report = json.loads(
        s3.get_object(Bucket="cyclegan-runs", Key="delivered/colorshift/_translation.json")[
            "Body"
        ].read()
    )
    assert report["model"]["version"] == champion.version and report["complete"], report
    model = f"models:/cyclegan-resumed-colorshift/{champion.version}"
    line = f"delivery: task resumed-colorshift: {DELIVERED} by {model}: translated 2,"
    assert line in output, output[-6000:]


def _lower(creds: dict[str, str]) -> dict[str, str]:
    return {
        "aws_access_key_id": creds["AWS_ACCESS_KEY_ID"],
        "aws_secret_access_key": creds["AWS_SECRET_ACCESS_KEY"],
    }
