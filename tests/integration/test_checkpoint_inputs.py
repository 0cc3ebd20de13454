"""Generator files given to `cyclegan translate`: other implementations' layouts load, a training
state loads, and every crafted or broken file ends in one message naming it, exit 2, no
traceback."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch import nn

from cyclegan.checkpoint import load_generator
from cyclegan.commands import main
from cyclegan.commands.runner import run_cli
from cyclegan.networks import ResnetGenerator


class _BlockNamedResnetBlock(nn.Module):
    """A residual block as other implementations write it (e.g. vintagify's G_A2B_epoch33.pth):
    the sequence is called `block` and its instance norms have a learned scale and shift."""

    def __init__(self, dim: int):
        super().__init__()
        self.block = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(dim, dim, 3),
            nn.InstanceNorm2d(dim, affine=True),
            nn.ReLU(),
            nn.ReflectionPad2d(1),
            nn.Conv2d(dim, dim, 3),
            nn.InstanceNorm2d(dim, affine=True),
        )

    def forward(self, x):
        return x + self.block(x)


def _affine_block_generator(ngf: int = 8, n_blocks: int = 3) -> nn.Module:
    """The layout of vintagify's released generator: `model.N.block.K`, affine InstanceNorm2d."""

    def norm(c):
        return nn.InstanceNorm2d(c, affine=True)

    layers = [
        nn.ReflectionPad2d(3),
        nn.Conv2d(3, ngf, 7),
        norm(ngf),
        nn.ReLU(),
        nn.Conv2d(ngf, ngf * 2, 3, 2, 1),
        norm(ngf * 2),
        nn.ReLU(),
        nn.Conv2d(ngf * 2, ngf * 4, 3, 2, 1),
        norm(ngf * 4),
        nn.ReLU(),
    ]
    layers += [_BlockNamedResnetBlock(ngf * 4) for _ in range(n_blocks)]
    layers += [
        nn.ConvTranspose2d(ngf * 4, ngf * 2, 3, 2, 1, output_padding=1),
        norm(ngf * 2),
        nn.ReLU(),
        nn.ConvTranspose2d(ngf * 2, ngf, 3, 2, 1, output_padding=1),
        norm(ngf),
        nn.ReLU(),
        nn.ReflectionPad2d(3),
        nn.Conv2d(ngf, 3, 7),
        nn.Tanh(),
    ]
    net = nn.Module()
    net.model = nn.Sequential(*layers)
    torch.manual_seed(3)
    for (
        p
    ) in net.parameters():  # scales and shifts far from 1 and 0, so that ignoring them would show
        nn.init.normal_(p, 0.3, 0.2)
    return net


def test_affine_instance_norm_and_block_named_generator_loads_and_translates_identically(tmp_path):
    theirs = _affine_block_generator()
    state = theirs.state_dict()
    assert (
        "model.10.block.1.weight" in state
        and "model.2.weight" in state
        and not any("running" in k for k in state)
    )
    path = tmp_path / "G_A2B_epoch33.pth"
    torch.save(state, path)
    ours = load_generator(path)
    assert ours.netG == "resnet_3blocks"
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert torch.allclose(ours(x), theirs.model(x), atol=1e-6)


def _images(folder: Path, n: int = 2) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        Image.new("RGB", (32, 32), (40 * i, 90, 200)).save(folder / f"img{i}.png")
    return folder


def _translate(tmp_path: Path, checkpoint: Path, *flags: str) -> int:
    return run_cli(
        main,
        [
            "translate",
            "--checkpoint",
            str(checkpoint),
            "--input",
            str(tmp_path / "in"),
            "--output",
            str(tmp_path / "out"),
            "--device",
            "cpu",
            *flags,
        ],
    )


def test_translate_takes_latest_state_pt_as_documented(tmp_path, tiny_trained, capsys):
    _images(tmp_path / "in")
    assert _translate(tmp_path, tiny_trained / "latest_state.pt") == 0
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["img0.png", "img1.png"]
    assert "wrote 2 translated image(s)" in capsys.readouterr().out


def test_translate_advice_can_be_followed_when_the_architecture_cannot_be_inferred(
    tmp_path, capsys
):
    # No residual block: nothing in the keys says "resnet", so translate asks for the architecture.
    torch.manual_seed(0)
    path = tmp_path / "G.pth"
    torch.save(ResnetGenerator(3, 3, ngf=8, n_blocks=0).state_dict(), path)
    _images(tmp_path / "in")
    assert _translate(tmp_path, path) == 2
    err = capsys.readouterr().err
    assert "cannot tell the generator architecture" in err and "--netG, --ngf and --norm" in err
    assert (
        _translate(tmp_path, path, "--netG", "resnet_0blocks", "--ngf", "8", "--norm", "instance")
        == 0
    )
    assert len(list((tmp_path / "out").iterdir())) == 2
    # ... and the channel flags it mentions exist: a grayscale-in generator given as such.
    gray = tmp_path / "G_gray.pth"
    torch.save(ResnetGenerator(1, 3, ngf=8, n_blocks=0).state_dict(), gray)
    assert (
        _translate(
            tmp_path,
            gray,
            "--netG",
            "resnet_0blocks",
            "--ngf",
            "8",
            "--norm",
            "instance",
            "--input_nc",
            "1",
        )
        == 0
    )


def _reference_state(ngf: int = 8, n_blocks: int = 2) -> dict:
    torch.manual_seed(0)
    return ResnetGenerator(3, 3, ngf=ngf, n_blocks=n_blocks).state_dict()


def _wrong_shape() -> dict:
    state = _reference_state()
    state["model.10.conv_block.1.weight"] = torch.zeros(32, 32, 1, 1)
    return state


def _partial() -> dict:
    state = _reference_state()
    return {k: v for k, v in state.items() if not k.startswith("model.11.conv_block.5.")}


def _write_text(path: Path) -> None:
    path.write_text("this is not a checkpoint\n")


def _write_refused_pickle(path: Path) -> None:
    torch.save(
        {"opt": argparse.Namespace(lr=0.1)}, path
    )  # an object only full unpickling could rebuild


def _save(obj):
    return lambda path: torch.save(obj, path)


# (case, how the file is written, flags, what the one message says)
CASES = [
    ("empty dict", _save({}), (), "an empty state_dict"),
    ("a list", _save([torch.zeros(3)]), (), "it holds a list"),
    ("a tensor", _save(torch.zeros(3, 3)), (), "it holds a tensor of shape (3, 3)"),
    (
        "non-tensor values",
        _save({"model.1.weight": "text"}),
        (),
        "entry 'model.1.weight' holds a str",
    ),
    (
        "partial keys",
        _save(_partial()),
        (),
        "2 missing key(s): model.11.conv_block.5.weight, model.11.conv_block.5.bias;",
    ),
    (
        "wrong shapes",
        _save(_wrong_shape()),
        (),
        "wrong shape key(s): model.10.conv_block.1.weight (32, 32, 1, 1) (network: (32, 32, 3, 3))",
    ),
    (
        "unknown layout",
        _save({"encoder.0.weight": torch.zeros(8, 3, 7, 7)}),
        (),
        "cannot tell the generator architecture from its keys (encoder.0.weight",
    ),
    (
        "unknown layout, architecture given",
        _save({"encoder.0.weight": torch.zeros(8, 3, 7, 7)}),
        ("--netG", "resnet_2blocks", "--ngf", "8", "--norm", "instance"),
        "1 unexpected key(s): encoder.0.weight",
    ),
    (
        "given architecture does not fit",
        _save(_reference_state()),
        ("--ngf", "16"),
        "does not fit resnet_2blocks (ngf=16",
    ),
    (
        "training state without G_A",
        _save({"format": 1, "model": {"nets": {"D_A": {}}}}),
        (),
        "a training state without a G_A network",
    ),
    ("not a checkpoint", _write_text, (), "not a readable PyTorch checkpoint"),
    (
        "pickle refused by weights_only",
        _write_refused_pickle,
        (),
        "holds a Python object (argparse.Namespace) that safe loading (weights_only=True) refuses",
    ),
    ("missing file", lambda path: None, (), "checkpoint file not found"),
]


@pytest.mark.parametrize("case, write, flags, message", CASES, ids=[c[0] for c in CASES])
def test_crafted_checkpoint_gives_one_message_and_exit_2(
    tmp_path, capsys, case, write, flags, message
):
    path = tmp_path / "crafted.pth"
    write(path)
    _images(tmp_path / "in", 1)
    assert _translate(tmp_path, path, *flags) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}: "), captured.err
    assert message in lines[0]
    assert "Traceback" not in captured.err + captured.out
    assert not (tmp_path / "out").exists()
