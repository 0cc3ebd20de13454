"""Training end to end on a tiny dataset: outputs, exact resume, the CLI and its errors,
translate."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from PIL import Image

from conftest import tiny_config
from cyclegan.checkpoint import load_generator, load_training_state
from cyclegan.commands import main as cyclegan_main
from cyclegan.commands import runner
from cyclegan.errors import UserError
from cyclegan.run_files import STATE_FILE
from cyclegan.trainer import Trainer
from cyclegan.visualize import tile

REPO = Path(__file__).resolve().parents[2]


def run_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run(
        [sys.executable, "-m", "cyclegan", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=300,
    )


def test_training_writes_reference_files_logs_and_sample_grids(tiny_dataset, tmp_path):
    cfg = tiny_config(tiny_dataset, tmp_path, n_epochs=1, n_epochs_decay=1, save_epoch_freq=1)
    metrics = Trainer(cfg).fit()
    out = tmp_path / "tiny"
    for prefix in ("latest", "1", "2"):
        for net in ("G_A", "G_B", "D_A", "D_B"):
            state = torch.load(out / f"{prefix}_net_{net}.pth", weights_only=True)
            assert all(isinstance(v, torch.Tensor) for v in state.values())
    assert load_training_state(out / STATE_FILE)["epoch"] == 2
    grid = Image.open(out / "samples" / "epoch_002.png")
    assert grid.size == (
        6 * 34 + 2,
        cfg.n_samples * 34 + 2,
    )  # six 32x32 tiles per sample, 2-pixel white gaps
    assert "epoch_002.png" in (out / "samples" / "index.html").read_text()
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert [x["epoch"] for x in lines] == [1, 2]
    assert lines[1]["lr"] == pytest.approx(2e-4 / 2)  # after epoch 2 of 1+1: decayed once
    assert metrics["iterations"] == 12 and metrics["pairs_per_s"] > 0
    assert "D_A:" in (out / "loss_log.txt").read_text()


def test_sample_grid_is_laid_out_as_torchvisions_make_grid():
    from torchvision.utils import make_grid

    tiles = torch.rand(8, 3, 5, 7)
    expected = (
        make_grid(tiles, nrow=6, padding=2, pad_value=1.0)
        .mul(255)
        .add_(0.5)
        .clamp_(0, 255)
        .to(torch.uint8)
    )
    assert torch.equal(torch.from_numpy(tile(tiles, nrow=6)), expected.permute(1, 2, 0))


class StopAfter:
    def __init__(self, epoch: int):
        self.epoch = epoch

    def __call__(self, trainer, epoch, metrics):
        if epoch == self.epoch:
            raise KeyboardInterrupt


def _weights(out: Path) -> dict:
    return {
        net: torch.load(out / f"latest_net_{net}.pth", weights_only=True)
        for net in ("G_A", "G_B", "D_A", "D_B")
    }


def test_continue_train_resumes_bit_for_bit(tiny_dataset, tmp_path):
    # pool_size 4 < images per epoch so that the pool's stored images and RNG matter after the
    # resume
    overrides = dict(n_epochs=2, n_epochs_decay=1, pool_size=4)
    Trainer(tiny_config(tiny_dataset, tmp_path / "straight", **overrides)).fit()

    interrupted = tmp_path / "interrupted"
    with pytest.raises(KeyboardInterrupt):
        Trainer(
            tiny_config(tiny_dataset, interrupted, **overrides), on_epoch_end=[StopAfter(2)]
        ).fit()
    assert load_training_state(interrupted / "tiny" / STATE_FILE)["epoch"] == 2
    resumed = Trainer(tiny_config(tiny_dataset, interrupted, continue_train=True, **overrides))
    assert resumed.start_epoch == 3  # no --epoch_count needed
    resumed.fit()

    a, b = _weights(tmp_path / "straight" / "tiny"), _weights(interrupted / "tiny")
    for net in a:
        for key in a[net]:
            assert torch.equal(a[net][key], b[net][key]), f"{net}.{key}"
    straight_log = (tmp_path / "straight" / "tiny" / "metrics.jsonl").read_text().splitlines()
    resumed_log = (interrupted / "tiny" / "metrics.jsonl").read_text().splitlines()
    assert json.loads(straight_log[-1])["loss_G"] == json.loads(resumed_log[-1])["loss_G"]


def test_continue_without_anything_to_continue(tiny_dataset, tmp_path):
    with pytest.raises(UserError, match="--continue_train: nothing to continue"):
        Trainer(tiny_config(tiny_dataset, tmp_path, continue_train=True))


def test_continue_from_reference_network_files(tiny_dataset, tmp_path):
    Trainer(tiny_config(tiny_dataset, tmp_path, n_epochs=1, n_epochs_decay=0)).fit()
    (tmp_path / "tiny" / STATE_FILE).unlink()  # only the reference-style files remain
    trainer = Trainer(
        tiny_config(
            tiny_dataset, tmp_path, continue_train=True, epoch_count=2, n_epochs=1, n_epochs_decay=1
        )
    )
    assert trainer.start_epoch == 2
    saved = torch.load(tmp_path / "tiny" / "latest_net_G_A.pth", weights_only=True)
    assert torch.equal(
        trainer.model.nets["G_A"].state_dict()["model.1.weight"], saved["model.1.weight"]
    )


def test_cli_train_then_translate(tiny_dataset, tmp_path):
    result = run_cli(
        "train",
        "--dataroot",
        str(tiny_dataset),
        "--name",
        "cli",
        "--checkpoints_dir",
        str(tmp_path),
        "--netG",
        "resnet_2blocks",
        "--ngf",
        "8",
        "--ndf",
        "8",
        "--load_size",
        "32",
        "--crop_size",
        "32",
        "--n_epochs",
        "1",
        "--n_epochs_decay",
        "0",
        "--num_threads",
        "1",
        "--device",
        "cpu",
    )
    assert result.returncode == 0, result.stderr
    assert "sample grids:" in result.stdout and "latest_net_G_A.pth" in result.stdout

    inputs = tmp_path / "inputs"
    inputs.mkdir()
    Image.open(next((tiny_dataset / "testA").iterdir())).resize((30, 22)).save(inputs / "odd.png")
    Image.open(next((tiny_dataset / "testA").iterdir())).save(inputs / "normal.jpg")
    out = tmp_path / "translated"
    result = run_cli(
        "translate",
        "--checkpoint",
        str(tmp_path / "cli" / "latest_net_G_A.pth"),
        "--input",
        str(inputs),
        "--output",
        str(out),
        "--device",
        "cpu",
    )
    assert result.returncode == 0, result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["normal.jpg", "odd.png"]
    # the input's exact size: padded to the generator's multiple of 4, translated, cropped back
    assert Image.open(out / "odd.png").size == (30, 22)
    assert Image.open(out / "normal.jpg").size == (32, 32)

    # the same translation from Python, through load_generator
    net = load_generator(tmp_path / "cli" / "latest_net_G_A.pth")
    assert net.netG == "resnet_2blocks"


@pytest.mark.parametrize(
    "args,message",
    [
        (
            ["train", "--dataroot", "/no/such/folder"],
            "error: /no/such/folder: dataset folder not found",
        ),
        (
            ["train", "--dataroot", "{data}", "--netG", "resnet_xblocks"],
            "error: --netG: unknown generator 'resnet_xblocks'",
        ),
        (
            ["train", "--dataroot", "{data}", "--crop_size", "300"],
            "error: --crop_size: 300 is larger than --load_size 286",
        ),
        (["train", "--dataroot", "{data}", "--lr", "-1"], "error: --lr: must be positive"),
        (["train", "--dataroot", "{empty}"], "no trainA/ or trainB/ found"),
        (
            ["translate", "--checkpoint", "/no/file.pth", "--input", "{data}", "--output", "{tmp}"],
            "error: /no/file.pth: checkpoint file not found",
        ),
        (
            ["translate", "--checkpoint", "{garbage}", "--input", "{data}", "--output", "{tmp}"],
            "not a readable PyTorch checkpoint",
        ),
    ],
)
def test_cli_errors_are_one_clear_line(tiny_dataset, tmp_path, capsys, args, message):
    """In this process (an exception that escaped as a traceback would fail the test); the real
    process's exit code and stderr are checked below."""
    (tmp_path / "empty").mkdir()
    (tmp_path / "garbage.pth").write_text("not a checkpoint")
    subs = {
        "{data}": str(tiny_dataset),
        "{empty}": str(tmp_path / "empty"),
        "{tmp}": str(tmp_path / "o"),
        "{garbage}": str(tmp_path / "garbage.pth"),
    }
    assert runner.run_cli(cyclegan_main, [subs.get(a, a) for a in args]) == 2
    stderr = capsys.readouterr().err
    assert message in stderr and len(stderr.strip().splitlines()) == 1, stderr


def test_the_process_exits_2_with_one_line_and_debug_shows_the_traceback():
    plain = run_cli("train", "--dataroot", "/no/such/folder")
    lines = plain.stderr.strip().splitlines()
    assert (
        plain.returncode == 2
        and len(lines) == 1
        and lines[0].startswith("error: /no/such/folder: dataset folder not found")
    ), plain.stderr
    debug = run_cli("train", "--dataroot", "/no/such/folder", "--debug")
    assert debug.returncode != 0 and "Traceback" in debug.stderr


def test_help_explains_every_flag():
    result = run_cli("train", "--help")
    assert result.returncode == 0
    for flag in (
        "--netG",
        "--netD",
        "--ngf",
        "--ndf",
        "--norm",
        "--init_type",
        "--init_gain",
        "--gan_mode",
        "--pool_size",
        "--lambda_A",
        "--lambda_B",
        "--lambda_identity",
        "--lr",
        "--beta1",
        "--n_epochs",
        "--n_epochs_decay",
        "--lr_policy",
        "--batch_size",
        "--load_size",
        "--crop_size",
        "--preprocess",
        "--no_flip",
        "--serial_batches",
        "--max_dataset_size",
        "--direction",
        "--continue_train",
        "--epoch_count",
        "--save_epoch_freq",
        "--num_threads",
        "--seed",
        "--device",
        "--no_dropout",
    ):
        assert flag in result.stdout
    assert "(default: 0.5)" in result.stdout  # lambda_identity, the paper's value


def test_a_state_trained_under_other_hyperparameters_continues_under_the_new_config(
    tiny_dataset, tmp_path
):
    """What a PBT trial does when it exploits another: the donor's networks, optimizer moments and
    epoch, the new config's learning rate (at the schedule's position), pool size and loss
    weights."""
    small = dict(n_epochs=1, max_dataset_size=3)
    donor = Trainer(
        tiny_config(
            tiny_dataset, tmp_path / "donor", n_epochs_decay=3, pool_size=6, lr=2e-4, **small
        ),
        on_epoch_end=[StopAfter(2)],
    )
    with pytest.raises(KeyboardInterrupt):
        donor.fit()
    state = load_training_state(tmp_path / "donor" / "tiny" / STATE_FILE)
    assert state["epoch"] == 2 and len(donor.model.pool_A.images) == 6
    assert donor.model.learning_rate == pytest.approx(
        2e-4 * 0.5
    )  # the linear decay's position after 2 epochs

    cfg = tiny_config(
        tiny_dataset,
        tmp_path / "recipient",
        n_epochs_decay=4,
        pool_size=2,
        lr=1e-3,
        lambda_A=0.5,
        **small,
    )
    recipient = Trainer(cfg, resume_state=state)
    model = recipient.model
    assert recipient.start_epoch == 3
    for name, net in model.nets.items():
        for key, value in net.state_dict().items():
            assert torch.equal(value, donor.model.nets[name].state_dict()[key]), f"{name}.{key}"
    assert torch.equal(
        model.opt_G.state_dict()["state"][0]["exp_avg"],
        donor.model.opt_G.state_dict()["state"][0]["exp_avg"],
    )
    for opt in (model.opt_G, model.opt_D):
        assert opt.param_groups[0]["initial_lr"] == 1e-3
        assert opt.param_groups[0]["lr"] == pytest.approx(1e-3 * 0.5)
    assert model.pool_A.pool_size == model.pool_B.pool_size == 2 and len(model.pool_A.images) == 2
    assert model.cfg.lambda_A == 0.5
    recipient.train_epoch(
        3
    )  # it trains, and its schedule goes on from the new rate under the new decay length
    for scheduler in model.schedulers:
        scheduler.step()
    assert model.opt_G.param_groups[0]["lr"] == pytest.approx(1e-3 * (1 - 3 / 5))
