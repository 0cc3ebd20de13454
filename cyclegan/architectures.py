"""The generators and discriminators by name (--netG, --netD): one entry each, without torch.

What the rest of the code knows of an architecture comes from its entry: the command lines' choices,
option validation (the image sizes it can take) and, for a generator, recognising it in a checkpoint
from its state_dict keys. `cyclegan.networks` builds the nn.Module an entry names. A new
architecture is its module in networks.py and one entry here (docs/architecture.md).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

# The networks' spatial structure (tests/unit/test_networks.py checks the size rules below against
# the built networks): stride-2 halvings in the ResNet generator, the depth of the paper's PatchGAN.
RESNET_DOWNSAMPLINGS = 2
BASIC_D_LAYERS = 3
NORMS = (
    "instance",
    "batch",
    "none",
)  # --norm for training; instance is the paper's (no affine, no running statistics)
LOADED_NORMS = (
    "instance",
    "instance_affine",
    "batch",
    "none",
)  # in checkpoints too: other implementations' affine instance norm
PARAM = "<N>"  # in a generator's name: a whole number the network is built with (resnet_<N>blocks)

StateDict = Mapping[str, Any]  # parameter name -> tensor; only key names and shapes are read here


@dataclass(frozen=True)
class Generator:
    network: str  # the nn.Module class in cyclegan.networks
    # (multiple, smallest): a square side s comes back at side s exactly when s is a multiple >=
    # smallest
    size_rule: tuple[int, int]
    options: Callable[
        [int | None], dict[str, Any]
    ]  # constructor arguments the name sets, from its <N> (None without one)
    # From a state_dict: {"n": <N> or None, "ngf", "norm", "input_nc", "output_nc"} if it is this
    # architecture, else None.
    recognise: Callable[[StateDict], dict[str, Any] | None] = field(default=lambda state: None)


@dataclass(frozen=True)
class Discriminator:
    network: str  # the nn.Module class in cyclegan.networks
    options: Callable[[int], dict[str, Any]]  # constructor arguments, given --n_layers_D
    smallest_side: Callable[[int], int]  # the smallest input side it judges, given --n_layers_D


# -- recognising a generator in a checkpoint -------------------------------------------------------
def _norm_kind(state: StateDict, norm: str, conv: str) -> str:
    """The normalization from the first norm layer's keys and the first conv's bias: batch norm has
    a scale and running statistics, affine instance norm only a scale; convs before a norm of ours
    have a bias."""
    if f"{norm}.weight" in state:
        return "batch" if f"{norm}.running_mean" in state else "instance_affine"
    return "instance" if f"{conv}.bias" in state else "none"


def _resnet_keys(state: StateDict) -> dict[str, Any] | None:
    """ResnetGenerator: `model.<i>.conv_block.*` residual blocks between 7x7 convolutions."""
    blocks = {int(m.group(1)) for k in state if (m := re.match(r"model\.(\d+)\.conv_block\.", k))}
    convs = [int(m.group(1)) for k in state if (m := re.match(r"model\.(\d+)\.weight$", k))]
    if not (blocks and "model.1.weight" in state and convs):
        return None
    first = state["model.1.weight"]
    return {
        "n": len(blocks),
        "ngf": first.shape[0],
        "norm": _norm_kind(state, "model.2", "model.1"),
        "input_nc": first.shape[1],
        "output_nc": state[f"model.{max(convs)}.weight"].shape[0],
    }


def _unet_keys(num_downs: int) -> Callable[[StateDict], dict[str, Any] | None]:
    """UnetGenerator with `num_downs` levels, nested `model.model.1.model.1...`: its innermost keys
    hold `model.` num_downs + 1 times."""

    def recognise(state: StateDict) -> dict[str, Any] | None:
        if "model.model.0.weight" not in state or "model.model.3.weight" not in state:
            return None
        if max(k.count("model.") for k in state) != num_downs + 1:
            return None
        first, outer = (
            state["model.model.0.weight"],
            state["model.model.3.weight"],
        )  # outer: ConvTranspose2d (in, out, k, k)
        return {
            "n": None,
            "ngf": first.shape[0],
            "norm": _norm_kind(state, "model.model.1.model.2", "model.model.1.model.1"),
            "input_nc": first.shape[1],
            "output_nc": outer.shape[1],
        }

    return recognise


def _patchgan_side(layers: int) -> int:
    """A PatchGAN of n layers halves n times, then its last two 4x4 convolutions take one pixel
    each."""
    return 3 * 2**layers


# -- the registries --------------------------------------------------------------------------------
GENERATORS: dict[str, Generator] = {
    # Johnson et al., the paper's: resnet_9blocks for 256x256, resnet_6blocks for 128x128. The
    # residual blocks' reflection padding needs at least a 2x2 bottleneck.
    "resnet_<N>blocks": Generator(
        "ResnetGenerator",
        (2**RESNET_DOWNSAMPLINGS, 2 * 2**RESNET_DOWNSAMPLINGS),
        lambda n: {"n_blocks": n},
        _resnet_keys,
    ),
    # U-Nets halve down to 1x1 (the innermost level has no norm), then double back.
    "unet_128": Generator("UnetGenerator", (2**7, 2**7), lambda n: {"num_downs": 7}, _unet_keys(7)),
    "unet_256": Generator("UnetGenerator", (2**8, 2**8), lambda n: {"num_downs": 8}, _unet_keys(8)),
}

DISCRIMINATORS: dict[str, Discriminator] = {
    "basic": Discriminator(
        "NLayerDiscriminator",
        lambda n: {"n_layers": BASIC_D_LAYERS},  # the paper's 70x70 PatchGAN
        lambda n: _patchgan_side(BASIC_D_LAYERS),
    ),
    "n_layers": Discriminator("NLayerDiscriminator", lambda n: {"n_layers": n}, _patchgan_side),
    "pixel": Discriminator(
        "PixelDiscriminator", lambda n: {}, lambda n: 2
    ),  # 1x1 patches; instance norm needs 2 pixels
}


# -- looking names up ------------------------------------------------------------------------------
def find_generator(name: str) -> tuple[Generator, int | None] | None:
    """The entry for generator `name` and its <N> (None without one), or None for an unknown
    name."""
    for pattern, spec in GENERATORS.items():
        head, param, tail = pattern.partition(PARAM)
        if not param and name == pattern:
            return spec, None
        if param and (match := re.fullmatch(re.escape(head) + r"(\d+)" + re.escape(tail), name)):
            return spec, int(match.group(1))
    return None


class GeneratorNames:
    """The generator names, as argparse's `choices` and for `in`: read from GENERATORS when used, so
    that an entry added there is a choice at once; `resnet_9blocks in GENERATOR_NAMES` matches its
    pattern."""

    def __iter__(self) -> Iterator[str]:
        return iter(GENERATORS)

    def __len__(self) -> int:
        return len(GENERATORS)

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and find_generator(name) is not None

    def __str__(self) -> str:
        names = list(GENERATORS)
        return ", ".join(names[:-1]) + f" or {names[-1]}" if len(names) > 1 else names[0]


GENERATOR_NAMES = GeneratorNames()


def recognise_generator(state: StateDict) -> dict[str, Any] | None:
    """netG, ngf, norm, input_nc and output_nc of the generator whose state_dict this is, or
    None."""
    for pattern, spec in GENERATORS.items():
        found = spec.recognise(state)
        if found is not None:
            n = found.pop("n")
            return {"netG": pattern.replace(PARAM, str(n)) if n is not None else pattern, **found}
    return None


# -- image sizes the networks can take -------------------------------------------------------------
def generator_size_rule(net_g: str) -> tuple[int, int]:
    """(multiple, smallest): a square input of side s comes back from generator `net_g` at side s
    exactly when s is a multiple of `multiple` and at least `smallest`."""
    found = find_generator(net_g)
    if found is None:
        raise KeyError(net_g)
    return found[0].size_rule


def discriminator_smallest_side(net_d: str, n_layers_d: int) -> int:
    """The smallest input side discriminator `net_d` gives a patch map for."""
    return DISCRIMINATORS[net_d].smallest_side(n_layers_d)
