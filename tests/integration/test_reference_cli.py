"""A home for reference users: the reference's documented train.py / test.py command lines work as
`python -m cyclegan train|test`, and every flag of its train options is accepted (doing what it did
there, or saying in one line why it changes nothing here)."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from cyclegan.commands import build_parser, main
from cyclegan.commands.reference_flags import apply_train_flags, device_from_gpu_ids
from cyclegan.commands.runner import run_cli
from cyclegan.errors import UserError
from cyclegan.sources.synthetic import generate

# Tiny sizes appended to the documented lines, so that they run in seconds on a CPU.
TINY_TRAIN = [
    "--gpu_ids",
    "-1",
    "--netG",
    "resnet_1blocks",
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
    "1",
    "--num_threads",
    "0",
    "--n_samples",
    "1",
]
TINY_TEST = ["--gpu_ids", "-1", "--load_size", "32", "--crop_size", "32"]

# Every flag of the reference's options/base_options.py and options/train_options.py (and the
# CycleGAN model's own), with a value a user of the reference would pass.
REFERENCE_TRAIN_FLAGS = {
    "--dataroot": "DATA",
    "--name": "ref",
    "--gpu_ids": "-1",
    "--checkpoints_dir": "CKPT",
    "--model": "cycle_gan",
    "--input_nc": "3",
    "--output_nc": "3",
    "--ngf": "8",
    "--ndf": "8",
    "--netD": "basic",
    "--netG": "resnet_1blocks",
    "--n_layers_D": "3",
    "--norm": "instance",
    "--init_type": "normal",
    "--init_gain": "0.02",
    "--no_dropout": None,
    "--dataset_mode": "unaligned",
    "--direction": "AtoB",
    "--serial_batches": None,
    "--num_threads": "0",
    "--batch_size": "1",
    "--load_size": "32",
    "--crop_size": "32",
    "--max_dataset_size": "4",
    "--preprocess": "resize_and_crop",
    "--no_flip": None,
    "--display_winsize": "256",
    "--epoch": "latest",
    "--load_iter": "0",
    "--verbose": None,
    "--suffix": "{netG}",
    "--use_wandb": None,
    "--wandb_project_name": "CycleGAN-and-pix2pix",
    "--display_freq": "400",
    "--display_ncols": "4",
    "--display_id": "1",
    "--display_server": "http://localhost",
    "--display_env": "main",
    "--display_port": "8097",
    "--update_html_freq": "1000",
    "--print_freq": "100",
    "--no_html": None,
    "--save_latest_freq": "5000",
    "--save_epoch_freq": "5",
    "--save_by_iter": None,
    "--continue_train": None,
    "--epoch_count": "1",
    "--phase": "train",
    "--n_epochs": "1",
    "--n_epochs_decay": "1",
    "--beta1": "0.5",
    "--lr": "0.0002",
    "--gan_mode": "lsgan",
    "--pool_size": "50",
    "--lr_policy": "linear",
    "--lr_decay_iters": "50",
    "--lambda_A": "10.0",
    "--lambda_B": "10.0",
    "--lambda_identity": "0.5",
}


@pytest.fixture
def datasets(tmp_path, monkeypatch) -> Path:
    """./datasets/maps (trainA trainB testA testB) in a fresh working directory, as the reference's
    README has it."""
    monkeypatch.chdir(tmp_path)
    generate("colorshift", tmp_path / "datasets" / "maps", n_train=4, n_test=3, size=32, seed=0)
    return tmp_path / "datasets"


def test_the_readmes_train_and_test_lines_work_here(datasets, capsys):
    # python train.py --dataroot ./datasets/maps --name maps_cyclegan --model cycle_gan
    assert (
        run_cli(
            main,
            [
                "train",
                "--dataroot",
                "./datasets/maps",
                "--name",
                "maps_cyclegan",
                "--model",
                "cycle_gan",
                *TINY_TRAIN,
            ],
        )
        == 0
    )
    trained = Path("checkpoints/maps_cyclegan")
    assert (trained / "latest_net_G_A.pth").is_file() and (trained / "latest_net_G_B.pth").is_file()

    # python test.py --dataroot ./datasets/maps --name maps_cyclegan --model cycle_gan
    assert (
        run_cli(
            main,
            [
                "test",
                "--dataroot",
                "./datasets/maps",
                "--name",
                "maps_cyclegan",
                "--model",
                "cycle_gan",
                *TINY_TEST,
            ],
        )
        == 0
    )
    page = Path("results/maps_cyclegan/test_latest")
    labels = ("real_A", "fake_B", "rec_A", "real_B", "fake_A", "rec_B")
    assert sorted(p.name for p in (page / "images").iterdir()) == sorted(
        f"{i:05d}_{label}.png" for i in range(3) for label in labels
    )
    html = (page / "index.html").read_text()
    assert (
        "Experiment = maps_cyclegan, Phase = test, Epoch = latest" in html
        and 'src="images/00002_rec_B.png"' in html
    )
    # --direction BtoA swaps the folders as in training: real_A is now a testB image.
    assert (
        run_cli(
            main,
            [
                "test",
                "--dataroot",
                "./datasets/maps",
                "--name",
                "maps_cyclegan",
                "--model",
                "cycle_gan",
                "--direction",
                "BtoA",
                "--results_dir",
                "swapped",
                *TINY_TEST,
            ],
        )
        == 0
    )
    swapped = np.asarray(Image.open("swapped/maps_cyclegan/test_latest/images/00000_real_A.png"))
    assert np.array_equal(
        swapped, np.asarray(Image.open("datasets/maps/testB/00000.png").convert("RGB"))
    )

    # python test.py --dataroot datasets/horse2zebra/testA --name horse2zebra_pretrained --model
    # test --no_dropout (a released model is one generator, latest_net_G.pth, in
    # checkpoints/<name>/)
    shutil.copytree("datasets/maps/testA", "datasets/horse2zebra/testA")
    Path("checkpoints/horse2zebra_pretrained").mkdir()
    shutil.copy(
        trained / "latest_net_G_A.pth", "checkpoints/horse2zebra_pretrained/latest_net_G.pth"
    )
    assert (
        run_cli(
            main,
            [
                "test",
                "--dataroot",
                "datasets/horse2zebra/testA",
                "--name",
                "horse2zebra_pretrained",
                "--model",
                "test",
                "--no_dropout",
                *TINY_TEST,
            ],
        )
        == 0
    )
    page = Path("results/horse2zebra_pretrained/test_latest")
    assert sorted(p.name for p in (page / "images").iterdir()) == sorted(
        f"{i:05d}_{k}.png" for i in range(3) for k in ("real", "fake")
    )
    assert 'src="images/00000_fake.png"' in (page / "index.html").read_text()

    # --model test --model_suffix _A on our own training, a given epoch, --num_test, --aspect_ratio,
    # --eval
    assert (
        run_cli(
            main,
            [
                "test",
                "--dataroot",
                "datasets/horse2zebra/testA",
                "--name",
                "maps_cyclegan",
                "--model",
                "test",
                "--model_suffix",
                "_A",
                "--epoch",
                "2",
                "--num_test",
                "2",
                "--aspect_ratio",
                "2",
                "--eval",
                "--results_dir",
                "elsewhere",
                *TINY_TEST,
            ],
        )
        == 0
    )
    shots = sorted((Path("elsewhere/maps_cyclegan/test_2/images")).iterdir())
    assert [p.name for p in shots] == [
        "00000_fake.png",
        "00000_real.png",
        "00001_fake.png",
        "00001_real.png",
    ]
    assert Image.open(shots[0]).size == (64, 32)  # twice as wide
    assert "Traceback" not in capsys.readouterr().err


def test_every_reference_train_flag_is_accepted_and_explained(tmp_path, capsys):
    argv = ["train"]
    for flag, value in REFERENCE_TRAIN_FLAGS.items():
        argv += (
            [flag]
            if value is None
            else [flag, value.replace("DATA", str(tmp_path)).replace("CKPT", str(tmp_path / "ck"))]
        )
    args = build_parser().parse_args(argv)
    notes = apply_train_flags(args, cuda_available=False)
    assert (
        args.device == "cpu" and args.name == "ref_resnet_1blocks" and args.n_samples == 0
    )  # --gpu_ids -1, --suffix, --no_html
    text = "\n".join(notes)
    assert (
        "--display_freq, --display_ncols, --display_id, --display_server, --display_env, "
        "--display_port: "
        "visdom display option of the reference: there is no visdom here" in text
    )
    assert str(tmp_path / "ck" / "ref_resnet_1blocks" / "samples") in text
    for flag in (
        "--display_winsize",
        "--update_html_freq",
        "--save_latest_freq",
        "--save_by_iter",
        "--use_wandb",
        "--wandb_project_name",
    ):
        assert sum(flag in note.split(": ", 1)[0].split(", ") for note in notes) == 1, flag
    # Each flag is in --help, with its explanation.
    with pytest.raises(SystemExit):
        build_parser().parse_args(["train", "--help"])
    helped = capsys.readouterr().out
    assert all(flag in helped for flag in REFERENCE_TRAIN_FLAGS), [
        f for f in REFERENCE_TRAIN_FLAGS if f not in helped
    ]


def test_the_older_reference_names_of_the_epoch_flags(tmp_path):
    args = build_parser().parse_args(
        ["train", "--dataroot", str(tmp_path), "--niter", "3", "--niter_decay", "4"]
    )
    assert (args.n_epochs, args.n_epochs_decay) == (3, 4)


def test_gpu_ids_choose_the_device():
    assert device_from_gpu_ids("-1", cuda_available=True) == ("cpu", None)
    assert device_from_gpu_ids("1", cuda_available=True) == ("cuda:1", None)
    device, note = device_from_gpu_ids("0,1", cuda_available=True)
    assert (
        device == "cuda:0"
        and "python -m orchestrator train --workers 2 --gpus-per-worker 1" in note
    )
    device, note = device_from_gpu_ids("0", cuda_available=False)
    assert device == "cpu" and "no CUDA device" in note
    with pytest.raises(UserError, match="--gpu_ids 'gpu0'"):
        device_from_gpu_ids("gpu0", cuda_available=True)


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--model", "pix2pix"], "--model pix2pix: only CycleGAN is trained here"),
        (["--dataset_mode", "aligned"], "--dataset_mode aligned: training reads unaligned pairs"),
        (["--phase", "val"], "--phase val: training reads <dataroot>/trainA and trainB"),
        (
            ["--continue_train", "--epoch", "5"],
            "--epoch 5: --continue_train resumes from latest_state.pt",
        ),
        (["--load_iter", "300"], "--load_iter 300: checkpoints here are per epoch"),
        (["--suffix", "{no_such_option}"], "--suffix '{no_such_option}': KeyError"),
    ],
)
def test_reference_values_this_project_cannot_honour_are_one_clear_message(
    tiny_dataset, tmp_path, capsys, flags, message
):
    assert (
        run_cli(
            main,
            ["train", "--dataroot", str(tiny_dataset), "--checkpoints_dir", str(tmp_path), *flags],
        )
        == 2
    )
    err = capsys.readouterr().err
    assert err.startswith(f"error: {message}") and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "experiment_name").exists()


def test_test_command_names_the_missing_generator_and_what_is_there(datasets, tmp_path, capsys):
    Path("checkpoints/run").mkdir(parents=True)
    Path("checkpoints/run/5_net_G_A.pth").write_bytes(b"")
    assert (
        run_cli(
            main, ["test", "--dataroot", "datasets/maps/testA", "--name", "run", "--model", "test"]
        )
        == 2
    )
    err = capsys.readouterr().err
    assert (
        "checkpoints/run/latest_net_G.pth: generator checkpoint not found; found 5_net_G_A.pth "
        "(--epoch, --model_suffix)" in err
    )
