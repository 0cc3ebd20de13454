"""Ray Train on a real local Ray (2 CPU workers, gloo), all sharing one Ray instance
(`ray_session`):

- DDP: the two workers end with identical weights while training on disjoint shards;
- checkpoints in local storage and in a moto-served s3:// bucket, loadable by the single-machine
  code;
- a worker process killed from outside: the run finishes (--max-failures 1) from its last
  checkpoint, with the same final weights as the uninterrupted run;
- the driver killed: relaunching the same command resumes;
- a complete run relaunched: trains nothing and reports its final metrics again.

About 3 minutes on a quiet 2-core machine, nearly all of it Ray starting processes: a Train fit
costs about 20 s however short its training (controller, workers and their helper actors).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import torch

from conftest import tiny_config
from cyclegan.checkpoint import load_file, load_generator
from cyclegan.commands.runner import run_cli
from cyclegan.model import CycleGAN
from cyclegan.networks import size_multiple
from cyclegan.sources.synthetic import generate
from cyclegan.trainer import Trainer
from cyclegan.translate import translate_folder
from orchestrator.commands import main
from orchestrator.config.resources import Resources
from orchestrator.storage.checkpoints import WORKER_STATES
from orchestrator.trial.ddp import fingerprint
from orchestrator.trial.ray_train import train_on_ray
from orchestrator.trial.spec import TrialSpec

pytestmark = pytest.mark.slow

REPO = Path(__file__).resolve().parents[2]
NETS = ("G_A", "G_B", "D_A", "D_B")
# 6 epochs, a checkpoint every 2: the kill tests need epochs left to interrupt after the first one.
RUN = dict(n_epochs=3, n_epochs_decay=3, save_epoch_freq=2, pool_size=4, load_size=64, crop_size=64)


@pytest.fixture(scope="module")
def data64(tmp_path_factory) -> Path:
    """12 images per domain at 64x64: epochs long enough to be interrupted from outside."""
    return generate(
        "colorshift",
        tmp_path_factory.mktemp("data64") / "colorshift",
        n_train=12,
        n_test=2,
        size=64,
        seed=1,
    )


@pytest.fixture(scope="module")
def ddp_run(ray_session, data64, tmp_path_factory):
    """The uninterrupted 2-worker run, in local storage: the reference the other runs are compared
    with."""
    root = tmp_path_factory.mktemp("ddp")
    result = train_on_ray(
        TrialSpec(
            tiny_config(data64, root / "outputs", **RUN),
            Resources(workers=2),
            str(root / "storage"),
            name="ddp",
            keep_checkpoints=2,
        )
    )
    return result, root


def _checkpoints(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("checkpoint_epoch_"))


def _networks(folder: Path) -> dict[str, dict]:
    return {net: load_file(folder / f"latest_net_{net}.pth") for net in NETS}


def test_two_workers_average_gradients_on_disjoint_shards(ddp_run, data64, tmp_path):
    result, root = ddp_run
    metrics = result.metrics
    assert metrics["epoch"] == 6 and result.start_epoch == 1
    assert metrics["world_size"] == 2 and metrics["batch_size_total"] == 2
    assert metrics["iterations"] == 6  # each worker took half of the 12 images
    assert (
        metrics["ddp_replicas_in_sync"] is True
        and metrics["ddp_shard_overlap"] == 0
        and metrics["ddp_shard_coverage"] == 1.0
    )

    run = root / "storage" / "ddp"
    assert _checkpoints(run) == [
        "checkpoint_epoch_0004",
        "checkpoint_epoch_0006",
    ]  # the last 2 kept
    last = run / "checkpoint_epoch_0006"
    assert result.checkpoint_path == str(last)

    # Rank 1 recorded a fingerprint of its own weights: it matches rank 0's saved networks exactly,
    # although the two ranks trained on disjoint shards of the data: the gradients were averaged.
    states = load_file(last / WORKER_STATES)
    assert len(states) == 2 and not set(states[0]["shard"]) & set(states[1]["shard"])
    assert sorted(states[0]["shard"] + states[1]["shard"]) == list(range(12))
    model = CycleGAN(tiny_config(data64, tmp_path, **RUN))
    for net, state in _networks(last).items():
        model.nets[net].load_state_dict(state)
    assert states[1]["fingerprint"] == fingerprint([model.generators, model.discriminators])
    assert states[0]["pool_A"]["images"].shape[0] == 4 and not torch.equal(
        states[0]["pool_A"]["images"], states[1]["pool_A"]["images"]
    )

    # The checkpoint is the single-machine trainer's format: translate with it, continue from it.
    net = load_generator(last / "latest_net_G_A.pth")
    written = translate_folder(
        net, data64 / "testA", tmp_path / "translated", size_multiple(net.netG), show_progress=False
    )
    assert len(written) == 2
    again = Trainer(
        tiny_config(data64, run, name="checkpoint_epoch_0004", continue_train=True, **RUN),
        show_progress=False,
    )
    assert again.start_epoch == 5


def test_relaunching_a_complete_run_trains_nothing_and_reports_its_final_metrics(ddp_run, data64):
    """What a resumed Tune trial relies on when its driver died before it recorded the last
    epoch."""
    result, root = ddp_run
    again = train_on_ray(
        TrialSpec(
            tiny_config(data64, root / "outputs", **RUN),
            Resources(workers=2),
            str(root / "storage"),
            name="ddp",
            keep_checkpoints=2,
        )
    )
    assert again.already_complete and again.metrics["epoch"] == 6
    assert (
        again.metrics["loss_G"] == result.metrics["loss_G"]
        and again.checkpoint_path == result.checkpoint_path
    )
    assert (
        again.ray_result.metrics["epoch"] == 6
    )  # reported to Ray again, so a Tune callback sees it
    assert _checkpoints(root / "storage" / "ddp") == [
        "checkpoint_epoch_0004",
        "checkpoint_epoch_0006",
    ]


def _train_workers() -> set[int]:
    """PIDs of this session's Ray Train worker processes: the Ray instance is ours, so they descend
    from this test process (other people's Ray clusters on the machine do not)."""
    parents, names = {}, {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                parents[int(entry.name)] = int(
                    (entry / "stat").read_text().rsplit(")", 1)[1].split()[1]
                )
                names[int(entry.name)] = (entry / "cmdline").read_bytes().decode(errors="replace")
            except (OSError, IndexError, ValueError):
                pass

    def ours(pid: int) -> bool:
        while pid > 1:
            pid = parents.get(pid, 0)
            if pid == os.getpid():
                return True
        return False

    return {pid for pid, name in names.items() if "RayTrainWorker" in name and ours(pid)}


def _wait_for(condition, timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    pytest.fail(f"timed out after {timeout:g} s waiting for {what}")


def test_a_killed_worker_is_replaced_and_the_run_resumes_from_its_last_checkpoint(
    ddp_run, data64, tmp_path, s3_env
):
    import boto3

    s3 = boto3.client("s3")
    s3.create_bucket(Bucket="ray-runs")
    snapshot_key = "ft/killed/checkpoint_manager_snapshot.json"

    def registered(epoch: int) -> bool:
        try:
            body = s3.get_object(Bucket="ray-runs", Key=snapshot_key)["Body"].read().decode()
        except s3.exceptions.NoSuchKey:
            return False
        return f"checkpoint_epoch_{epoch:04d}" in body

    outcome: dict = {}

    def run() -> None:
        try:
            outcome["result"] = train_on_ray(
                TrialSpec(
                    tiny_config(data64, tmp_path / "outputs", **RUN),
                    Resources(workers=2),
                    "s3://ray-runs/ft",
                    name="killed",
                    max_failures=1,
                    keep_checkpoints=2,
                )
            )
        except BaseException as err:  # noqa: BLE001 - reported by the assertion below
            outcome["error"] = err

    before = _train_workers()
    driver = threading.Thread(target=run, daemon=True)
    driver.start()
    # Once Ray has registered the epoch-2 checkpoint, kill one worker's process while epoch 3 runs.
    _wait_for(lambda: registered(2) or not driver.is_alive(), 300, "the epoch-2 checkpoint")
    workers = _train_workers() - before
    assert driver.is_alive() and len(workers) == 2, f"the run ended before the kill: {outcome}"
    victim = max(workers)
    os.kill(victim, signal.SIGKILL)
    driver.join(timeout=400)
    assert "error" not in outcome, outcome.get("error")
    result = outcome["result"]

    assert victim not in _train_workers()  # replaced by a new process
    assert result.metrics["epoch"] == 6
    # Resumed after a checkpoint (2, or 4 if the kill came late), not from scratch.
    assert (
        result.start_epoch in (3, 5)
        and result.metrics["resumed_from_epoch"] == result.start_epoch - 1
    )
    keys = {
        o["Key"] for o in s3.list_objects_v2(Bucket="ray-runs", Prefix="ft/killed/")["Contents"]
    }
    assert {k.split("/")[2] for k in keys if "checkpoint_epoch_" in k} == {
        "checkpoint_epoch_0004",
        "checkpoint_epoch_0006",
    }
    assert "ft/killed/checkpoint_epoch_0006/latest_net_G_A.pth" in keys

    # Same epochs, same schedule, same data, same pools: the same final weights as the uninterrupted
    # run.
    local = tmp_path / "from_s3"
    result.checkpoint.to_directory(str(local))
    reference = _networks(ddp_run[1] / "storage" / "ddp" / "checkpoint_epoch_0006")
    for net, state in _networks(local).items():
        for key, value in state.items():
            assert torch.equal(value, reference[net][key]), f"{net}.{key}"
    assert load_file(local / "latest_state.pt")["model"]["schedulers"][0]["last_epoch"] == 6
    written = translate_folder(
        load_generator(local / "latest_net_G_A.pth"),
        data64 / "testA",
        tmp_path / "translated",
        show_progress=False,
    )
    assert len(written) == 2


def test_relaunch_after_the_driver_is_killed_resumes(ray_session, data64, tmp_path, capsys):
    storage = tmp_path / "storage"
    args = [
        "train",
        "--address",
        ray_session,
        "--dataroot",
        str(data64),
        "--storage",
        str(storage),
        "--name",
        "relaunch",
        "--workers",
        "1",
        "--checkpoints_dir",
        str(tmp_path / "outputs"),
        "--netG",
        "resnet_2blocks",
        "--ngf",
        "8",
        "--ndf",
        "8",
        "--num_threads",
        "0",
        "--device",
        "cpu",
        "--print_freq",
        "5",
        "--n_samples",
        "2",
        *[f"--{k}={v}" for k, v in RUN.items()],
    ]
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    snapshot = storage / "relaunch" / "checkpoint_manager_snapshot.json"

    def registered() -> bool:
        try:
            return "checkpoint_epoch_0002" in snapshot.read_text()
        except OSError:
            return False

    with open(tmp_path / "first.log", "w") as log:
        first = subprocess.Popen(
            [sys.executable, "-m", "orchestrator", *args],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        _wait_for(
            lambda: registered() or first.poll() is not None,
            300,
            "the first driver's epoch-2 checkpoint",
        )
        assert first.poll() is None, (tmp_path / "first.log").read_text()[-3000:]
    finally:
        os.killpg(first.pid, signal.SIGKILL)  # the driver, as a crash or a lost SSH session would
        first.wait(30)

    # The same command again (in this process, already joined to the same Ray: no second start-up to
    # pay for)
    assert run_cli(main, args) == 0, capsys.readouterr().err[-3000:]
    printed = capsys.readouterr().out
    assert (
        "done: relaunch, 6 epochs on 1 worker(s) x batch 1 (effective batch 1), resumed after "
        "epoch " in printed
    )
    resumed_after = int(printed.split("resumed after epoch ")[1].split()[0])
    assert resumed_after in (2, 4)
    assert (
        "checkpoint_epoch_0006"
        in json.loads(snapshot.read_text())["checkpoint_results"][-1]["checkpoint_dir_name"]
    )
