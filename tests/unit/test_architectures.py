"""The architecture registries: a generator registered in one place is a --netG choice, is validated
with its own size rule (by the library and by `orchestrator validate`) and is recognised in a
checkpoint."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cyclegan import architectures, networks
from cyclegan.architectures import GENERATOR_NAMES, Generator, find_generator, recognise_generator
from cyclegan.checkpoint import load_generator
from cyclegan.commands import main
from cyclegan.commands.runner import run_cli
from cyclegan.config import TrainConfig
from cyclegan.errors import UserError


class ToyGenerator(nn.Module):
    """1x1 convolutions: `depth` hidden layers of `ngf` channels between an input and an output
    layer."""

    def __init__(
        self,
        input_nc: int,
        output_nc: int,
        ngf: int = 64,
        norm: str = "none",
        use_dropout: bool = False,
        depth: int = 1,
    ):
        super().__init__()
        self.head = nn.Conv2d(input_nc, ngf, 1)
        self.hidden = nn.Sequential(*[nn.Conv2d(ngf, ngf, 1) for _ in range(depth)])
        self.tail = nn.Conv2d(ngf, output_nc, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.tail(self.hidden(self.head(x))))


def _toy_keys(state) -> dict | None:
    if "head.weight" not in state:
        return None
    depth = len({k.split(".")[1] for k in state if k.startswith("hidden.")})
    return {
        "n": depth,
        "ngf": state["head.weight"].shape[0],
        "norm": "none",
        "input_nc": state["head.weight"].shape[1],
        "output_nc": state["tail.weight"].shape[0],
    }


@pytest.fixture
def toy_generator(monkeypatch):
    """toy_<N>: a generator that takes sides that are multiples of 8, at least 16, registered for
    one test."""
    monkeypatch.setitem(
        architectures.GENERATORS,
        "toy_<N>",
        Generator("ToyGenerator", (8, 16), lambda n: {"depth": n}, _toy_keys),
    )
    monkeypatch.setattr(networks, "ToyGenerator", ToyGenerator, raising=False)


def test_the_paper_generators_are_found_by_name_and_pattern():
    assert find_generator("resnet_9blocks")[1] == 9 and find_generator("unet_256")[1] is None
    assert (
        find_generator("resnet_blocks") is None
        and "resnet_12blocks" in GENERATOR_NAMES
        and "vgg" not in GENERATOR_NAMES
    )


@pytest.mark.parametrize("net_g", ["resnet_3blocks", "unet_128", "unet_256"])
@pytest.mark.parametrize("norm", ["instance", "batch", "none"])
def test_each_paper_generator_is_recognised_from_its_own_keys(net_g, norm):
    with torch.device("meta"):
        state = networks.build_generator(net_g, 1, 3, 8, norm, use_dropout=False).state_dict()
    assert recognise_generator(state) == {
        "netG": net_g,
        "ngf": 8,
        "norm": norm,
        "input_nc": 1,
        "output_nc": 3,
    }


@pytest.mark.parametrize("command", ["train", "translate", "test"])
def test_a_registered_generator_is_listed_as_a_netG_choice(toy_generator, capsys, command):
    with pytest.raises(SystemExit):
        main([command, "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "one of resnet_<N>blocks, unet_128, unet_256 or toy_<N>" in help_text


def test_an_unknown_generator_is_refused_naming_the_registered_ones(toy_generator, capsys):
    assert run_cli(main, ["train", "--dataroot", "x", "--netG", "resnet_xblocks"]) == 2
    assert capsys.readouterr().err == (
        "error: --netG: unknown generator 'resnet_xblocks'; "
        "use resnet_<N>blocks, unet_128, unet_256 or toy_<N>\n"
    )


def test_a_registered_generator_is_validated_with_its_own_size_rule(toy_generator):
    assert TrainConfig(netG="toy_2", load_size=48, crop_size=48).netG == "toy_2"
    with pytest.raises(
        UserError,
        match="--crop_size: 44 cannot go through --netG toy_2 .* a multiple of 8 of at least 16",
    ):
        TrainConfig(netG="toy_2", load_size=48, crop_size=44)
    assert isinstance(networks.build_generator("toy_3", 3, 3, 4, "none", False), ToyGenerator)


def test_orchestrator_validate_accepts_a_manifest_with_a_registered_generator(
    toy_generator, tmp_path, capsys
):
    from orchestrator.commands import main as orchestrator_main

    manifest = tmp_path / "toy.yaml"
    task = "tasks: [{name: t, data: 'synthetic://colorshift?size=32&n_train=4&n_test=2'}]\n"
    manifest.write_text(
        "name: toy\ndefaults: {train: {netG: toy_2, load_size: 48, crop_size: 48}}\n" + task
    )
    assert run_cli(orchestrator_main, ["validate", str(manifest)]) == 0
    manifest.write_text(
        "name: toy\ndefaults: {train: {netG: toy_2, load_size: 48, crop_size: 44}}\n" + task
    )
    assert run_cli(orchestrator_main, ["validate", str(manifest)]) == 2
    assert (
        "defaults.train.crop_size (line 2): 44 cannot go through --netG toy_2"
        in capsys.readouterr().err
    )


def test_a_registered_generator_is_recognised_in_a_checkpoint(toy_generator, tmp_path):
    path = tmp_path / "latest_net_G_A.pth"
    torch.save(ToyGenerator(3, 1, ngf=5, depth=2).state_dict(), path)
    assert recognise_generator(torch.load(path, weights_only=True)) == {
        "netG": "toy_2",
        "ngf": 5,
        "norm": "none",
        "input_nc": 3,
        "output_nc": 1,
    }
    net = load_generator(path)
    assert isinstance(net, ToyGenerator) and net.netG == "toy_2"
    assert net(torch.zeros(1, 3, 16, 16)).shape == (1, 1, 16, 16)
