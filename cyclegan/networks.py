"""Generators and discriminators of CycleGAN.

The module layouts (and so the state_dict keys) are the reference
implementation's: a ResnetGenerator is one `nn.Sequential` called `model`
(`model.1.weight`, `model.10.conv_block.1.weight`, `model.26.weight` for 9
blocks), so its checkpoints load here strictly and ours load there.

`--netG` and `--netD` name an entry of cyclegan.architectures, which names the
class below that builds it.
"""

from __future__ import annotations

import functools

import torch
from torch import nn

from .architectures import (
    DISCRIMINATORS,
    GENERATOR_NAMES,
    RESNET_DOWNSAMPLINGS,
    find_generator,
    generator_size_rule,
)
from .config import TrainConfig
from .errors import UserError


def norm_layer(kind: str):
    """Return a constructor `f(channels) -> nn.Module` for the normalization kind."""
    if kind == "batch":
        return functools.partial(nn.BatchNorm2d, affine=True, track_running_stats=True)
    if kind == "instance":
        # The paper's instance norm: no learned scale/shift, no running statistics.
        return functools.partial(nn.InstanceNorm2d, affine=False, track_running_stats=False)
    if (
        kind == "instance_affine"
    ):  # other implementations' instance norm, with a learned scale and shift (loading only)
        return functools.partial(nn.InstanceNorm2d, affine=True, track_running_stats=False)
    if kind == "none":
        return lambda channels: nn.Identity()
    raise UserError(
        f"--norm: unknown normalization {kind!r}; use instance, instance_affine, batch or none"
    )


def _uses_bias(norm: str) -> bool:
    # As in the reference: batch norm has its own shift, so convs before it drop the bias;
    # the reference also drops it for norm 'none', which we keep for checkpoint compatibility.
    return norm in ("instance", "instance_affine")


class ResnetBlock(nn.Module):
    def __init__(self, dim: int, norm: str, use_dropout: bool):
        super().__init__()
        make_norm, bias = norm_layer(norm), _uses_bias(norm)
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(1),
            nn.Conv2d(dim, dim, 3, bias=bias),
            make_norm(dim),
            nn.ReLU(True),
        ]
        if use_dropout:
            layers.append(nn.Dropout(0.5))
        layers += [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=bias), make_norm(dim)]
        self.conv_block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class ResnetGenerator(nn.Module):
    """Johnson et al.: c7s1-64, d128, d256, R256 x n_blocks, u128, u64, c7s1-3, tanh."""

    def __init__(
        self,
        input_nc: int = 3,
        output_nc: int = 3,
        ngf: int = 64,
        norm: str = "instance",
        use_dropout: bool = False,
        n_blocks: int = 9,
    ):
        super().__init__()
        make_norm, bias = norm_layer(norm), _uses_bias(norm)
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(input_nc, ngf, 7, bias=bias),
            make_norm(ngf),
            nn.ReLU(True),
        ]
        for i in range(RESNET_DOWNSAMPLINGS):
            mult = 2**i
            layers += [
                nn.Conv2d(ngf * mult, ngf * mult * 2, 3, stride=2, padding=1, bias=bias),
                make_norm(ngf * mult * 2),
                nn.ReLU(True),
            ]
        layers += [
            ResnetBlock(ngf * 2**RESNET_DOWNSAMPLINGS, norm, use_dropout) for _ in range(n_blocks)
        ]
        for i in range(RESNET_DOWNSAMPLINGS):  # upsampling
            mult = 2 ** (RESNET_DOWNSAMPLINGS - i)
            layers += [
                nn.ConvTranspose2d(
                    ngf * mult, ngf * mult // 2, 3, stride=2, padding=1, output_padding=1, bias=bias
                ),
                make_norm(ngf * mult // 2),
                nn.ReLU(True),
            ]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, output_nc, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class UnetSkipConnectionBlock(nn.Module):
    """One level of the U-Net: down, the inner levels, up, then concatenate the skip."""

    def __init__(
        self,
        outer_nc: int,
        inner_nc: int,
        input_nc: int | None = None,
        submodule: nn.Module | None = None,
        outermost: bool = False,
        innermost: bool = False,
        norm: str = "instance",
        use_dropout: bool = False,
    ):
        super().__init__()
        self.outermost = outermost
        make_norm, bias = norm_layer(norm), _uses_bias(norm)
        input_nc = outer_nc if input_nc is None else input_nc
        downconv = nn.Conv2d(input_nc, inner_nc, 4, stride=2, padding=1, bias=bias)
        downrelu, downnorm = nn.LeakyReLU(0.2, True), make_norm(inner_nc)
        uprelu, upnorm = nn.ReLU(True), make_norm(outer_nc)
        if outermost:
            upconv = nn.ConvTranspose2d(inner_nc * 2, outer_nc, 4, stride=2, padding=1)
            layers = [downconv, submodule, uprelu, upconv, nn.Tanh()]
        elif innermost:
            upconv = nn.ConvTranspose2d(inner_nc, outer_nc, 4, stride=2, padding=1, bias=bias)
            layers = [downrelu, downconv, uprelu, upconv, upnorm]
        else:
            upconv = nn.ConvTranspose2d(inner_nc * 2, outer_nc, 4, stride=2, padding=1, bias=bias)
            layers = [downrelu, downconv, downnorm, submodule, uprelu, upconv, upnorm]
            if use_dropout:
                layers.append(nn.Dropout(0.5))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.outermost:
            return self.model(x)
        return torch.cat([x, self.model(x)], 1)


class UnetGenerator(nn.Module):
    """U-Net with `num_downs` halvings: unet_128 has 7, unet_256 has 8."""

    def __init__(
        self,
        input_nc: int,
        output_nc: int,
        num_downs: int,
        ngf: int = 64,
        norm: str = "instance",
        use_dropout: bool = False,
    ):
        super().__init__()
        block = UnetSkipConnectionBlock(ngf * 8, ngf * 8, innermost=True, norm=norm)
        for _ in range(num_downs - 5):
            block = UnetSkipConnectionBlock(
                ngf * 8, ngf * 8, submodule=block, norm=norm, use_dropout=use_dropout
            )
        block = UnetSkipConnectionBlock(ngf * 4, ngf * 8, submodule=block, norm=norm)
        block = UnetSkipConnectionBlock(ngf * 2, ngf * 4, submodule=block, norm=norm)
        block = UnetSkipConnectionBlock(ngf, ngf * 2, submodule=block, norm=norm)
        self.model = UnetSkipConnectionBlock(
            output_nc, ngf, input_nc=input_nc, submodule=block, outermost=True, norm=norm
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class NLayerDiscriminator(nn.Module):
    """PatchGAN; with n_layers=3 it is the paper's 70x70 C64-C128-C256-C512 discriminator."""

    def __init__(self, input_nc: int, ndf: int = 64, n_layers: int = 3, norm: str = "instance"):
        super().__init__()
        make_norm, bias = norm_layer(norm), _uses_bias(norm)
        layers: list[nn.Module] = [
            nn.Conv2d(input_nc, ndf, 4, stride=2, padding=1),
            nn.LeakyReLU(0.2, True),
        ]
        mult = 1
        for n in range(1, n_layers + 1):
            prev, mult = mult, min(2**n, 8)
            stride = 2 if n < n_layers else 1
            layers += [
                nn.Conv2d(ndf * prev, ndf * mult, 4, stride=stride, padding=1, bias=bias),
                make_norm(ndf * mult),
                nn.LeakyReLU(0.2, True),
            ]
        layers.append(nn.Conv2d(ndf * mult, 1, 4, stride=1, padding=1))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class PixelDiscriminator(nn.Module):
    """1x1 PatchGAN: judges every pixel on its own."""

    def __init__(self, input_nc: int, ndf: int = 64, norm: str = "instance"):
        super().__init__()
        make_norm, bias = norm_layer(norm), _uses_bias(norm)
        self.net = nn.Sequential(
            nn.Conv2d(input_nc, ndf, 1),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf, ndf * 2, 1, bias=bias),
            make_norm(ndf * 2),
            nn.LeakyReLU(0.2, True),
            nn.Conv2d(ndf * 2, 1, 1, bias=bias),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def init_weights(net: nn.Module, init_type: str = "normal", gain: float = 0.02) -> nn.Module:
    """Conv weights from the chosen scheme, biases 0; batch-norm scale from N(1, gain)."""

    def init(m: nn.Module) -> None:
        name = m.__class__.__name__
        if hasattr(m, "weight") and ("Conv" in name or "Linear" in name):
            if init_type == "normal":
                nn.init.normal_(m.weight, 0.0, gain)
            elif init_type == "xavier":
                nn.init.xavier_normal_(m.weight, gain=gain)
            elif init_type == "kaiming":
                nn.init.kaiming_normal_(m.weight, a=0, mode="fan_in")
            elif init_type == "orthogonal":
                nn.init.orthogonal_(m.weight, gain=gain)
            else:
                raise UserError(f"--init_type: unknown initialization {init_type!r}")
            if getattr(m, "bias", None) is not None:
                nn.init.zeros_(m.bias)
        elif "BatchNorm2d" in name:
            nn.init.normal_(m.weight, 1.0, gain)
            nn.init.zeros_(m.bias)

    net.apply(init)
    return net


def build_generator(
    net_g: str, input_nc: int, output_nc: int, ngf: int, norm: str, use_dropout: bool
) -> nn.Module:
    """The generator `net_g` names (an entry of architectures.GENERATORS), not yet initialised."""
    found = find_generator(net_g)
    if found is None:
        raise UserError(f"--netG: unknown generator {net_g!r}; use {GENERATOR_NAMES}")
    spec, n = found
    return globals()[spec.network](
        input_nc, output_nc, ngf=ngf, norm=norm, use_dropout=use_dropout, **spec.options(n)
    )


def build_discriminator(net_d: str, input_nc: int, ndf: int, n_layers: int, norm: str) -> nn.Module:
    """The discriminator `net_d` names (an entry of architectures.DISCRIMINATORS); `n_layers`:
    --n_layers_D."""
    if net_d not in DISCRIMINATORS:
        raise UserError(f"--netD: unknown discriminator {net_d!r}; use {', '.join(DISCRIMINATORS)}")
    spec = DISCRIMINATORS[net_d]
    return globals()[spec.network](input_nc, ndf=ndf, norm=norm, **spec.options(n_layers))


def define_networks(cfg: TrainConfig) -> dict[str, nn.Module]:
    """The four networks, initialised: G_A: A->B, G_B: B->A, D_A judges B, D_B judges A."""
    nets = {
        "G_A": build_generator(
            cfg.netG, cfg.input_nc, cfg.output_nc, cfg.ngf, cfg.norm, cfg.dropout
        ),
        "G_B": build_generator(
            cfg.netG, cfg.output_nc, cfg.input_nc, cfg.ngf, cfg.norm, cfg.dropout
        ),
        "D_A": build_discriminator(cfg.netD, cfg.output_nc, cfg.ndf, cfg.n_layers_D, cfg.norm),
        "D_B": build_discriminator(cfg.netD, cfg.input_nc, cfg.ndf, cfg.n_layers_D, cfg.norm),
    }
    for net in nets.values():
        init_weights(net, cfg.init_type, cfg.init_gain)
    return nets


def size_multiple(net_g: str) -> int:
    """Input sides must be a multiple of this for the generator to give back the same size."""
    return generator_size_rule(net_g)[0]


def count_parameters(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())
