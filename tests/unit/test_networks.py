"""Networks: the paper's architectures, the reference's layouts, shapes and parameter counts."""

from __future__ import annotations

import functools

import pytest
import torch
from torch import nn

from cyclegan.checkpoint import load_generator
from cyclegan.config import TrainConfig
from cyclegan.networks import (
    NLayerDiscriminator,
    build_discriminator,
    build_generator,
    count_parameters,
    define_networks,
    init_weights,
)


def test_paper_parameter_counts():
    assert (
        count_parameters(build_generator("resnet_9blocks", 3, 3, 64, "instance", False))
        == 11_378_179
    )
    assert (
        count_parameters(build_generator("resnet_6blocks", 3, 3, 64, "instance", False))
        == 7_837_699
    )
    assert count_parameters(build_discriminator("basic", 3, 64, 3, "instance")) == 2_764_737


@pytest.mark.parametrize(
    "net_g,size",
    [
        ("resnet_9blocks", 64),
        ("resnet_6blocks", 32),
        ("resnet_3blocks", 36),
        ("unet_128", 128),
        ("unet_256", 256),
    ],
)
@pytest.mark.parametrize("norm", ["instance", "batch", "none"])
def test_generators_keep_the_image_shape(net_g, size, norm):
    net = build_generator(net_g, 3, 1, 8, norm, use_dropout=True)
    out = net(torch.randn(2, 3, size, size))
    assert out.shape == (2, 1, size, size)
    assert out.abs().max() <= 1.0  # tanh output


def test_patchgan_is_70x70_and_pixel_gan_is_1x1():
    d = build_discriminator("basic", 3, 8, 3, "instance")
    assert d(torch.randn(1, 3, 256, 256)).shape == (
        1,
        1,
        30,
        30,
    )  # the paper's 70x70 patches on 256^2
    d5 = build_discriminator("n_layers", 3, 8, 5, "batch")
    assert isinstance(d5, NLayerDiscriminator) and d5(torch.randn(2, 3, 256, 256)).shape == (
        2,
        1,
        6,
        6,
    )
    assert build_discriminator("pixel", 3, 8, 3, "none")(torch.randn(1, 3, 16, 16)).shape == (
        1,
        1,
        16,
        16,
    )


def test_reference_key_layout():
    keys = build_generator("resnet_9blocks", 3, 3, 64, "instance", False).state_dict().keys()
    for key in (
        "model.1.weight",
        "model.1.bias",
        "model.10.conv_block.1.weight",
        "model.18.conv_block.5.weight",
        "model.19.weight",
        "model.22.weight",
        "model.26.weight",
    ):
        assert key in keys
    assert not any("running" in k for k in keys)  # instance norm without running statistics
    assert "model.0.weight" in build_discriminator("basic", 3, 64, 3, "instance").state_dict()


def test_instance_norm_has_no_affine_and_batch_norm_drops_conv_bias():
    g = build_generator("resnet_1blocks", 3, 3, 8, "instance", False)
    assert isinstance(g.model[2], nn.InstanceNorm2d) and not g.model[2].affine
    gb = build_generator("resnet_1blocks", 3, 3, 8, "batch", False)
    assert gb.model[1].bias is None and isinstance(gb.model[2], nn.BatchNorm2d)


@pytest.mark.parametrize("init_type", ["normal", "xavier", "kaiming", "orthogonal"])
def test_init_zeroes_biases_and_scales_weights(init_type):
    torch.manual_seed(0)
    net = init_weights(
        build_generator("resnet_2blocks", 3, 3, 16, "instance", False), init_type, 0.02
    )
    conv = net.model[10].conv_block[1]  # first residual block's first conv
    assert torch.count_nonzero(conv.bias) == 0
    if init_type == "normal":
        assert abs(conv.weight.std().item() - 0.02) < 0.002
    assert conv.weight.std().item() > 0


def test_define_networks_follows_the_config():
    cfg = TrainConfig(
        netG="resnet_6blocks", ngf=16, ndf=8, input_nc=3, output_nc=1, lambda_identity=0
    )
    nets = define_networks(cfg)
    assert nets["G_A"](torch.randn(1, 3, 32, 32)).shape == (1, 1, 32, 32)
    assert nets["G_B"](torch.randn(1, 1, 32, 32)).shape == (1, 3, 32, 32)
    assert nets["D_A"].model[0].in_channels == 1 and nets["D_B"].model[0].in_channels == 3


def _reference_resnet_generator(ngf: int, n_blocks: int, track_running_stats: bool) -> nn.Module:
    """The reference implementation's ResnetGenerator, written out layer by layer, independent of
    ours. Old releases were saved with InstanceNorm running statistics
    (track_running_stats=True)."""
    norm = functools.partial(
        nn.InstanceNorm2d, affine=False, track_running_stats=track_running_stats
    )

    class Block(nn.Module):
        def __init__(self, dim):
            super().__init__()
            self.conv_block = nn.Sequential(
                nn.ReflectionPad2d(1),
                nn.Conv2d(dim, dim, 3, bias=True),
                norm(dim),
                nn.ReLU(True),
                nn.ReflectionPad2d(1),
                nn.Conv2d(dim, dim, 3, bias=True),
                norm(dim),
            )

        def forward(self, x):
            return x + self.conv_block(x)

    layers = [
        nn.ReflectionPad2d(3),
        nn.Conv2d(3, ngf, 7, bias=True),
        norm(ngf),
        nn.ReLU(True),
        nn.Conv2d(ngf, ngf * 2, 3, 2, 1, bias=True),
        norm(ngf * 2),
        nn.ReLU(True),
        nn.Conv2d(ngf * 2, ngf * 4, 3, 2, 1, bias=True),
        norm(ngf * 4),
        nn.ReLU(True),
    ]
    layers += [Block(ngf * 4) for _ in range(n_blocks)]
    layers += [
        nn.ConvTranspose2d(ngf * 4, ngf * 2, 3, 2, 1, output_padding=1, bias=True),
        norm(ngf * 2),
        nn.ReLU(True),
        nn.ConvTranspose2d(ngf * 2, ngf, 3, 2, 1, output_padding=1, bias=True),
        norm(ngf),
        nn.ReLU(True),
        nn.ReflectionPad2d(3),
        nn.Conv2d(ngf, 3, 7),
        nn.Tanh(),
    ]
    container = nn.Module()
    container.model = nn.Sequential(*layers)
    container.forward = lambda x: container.model(x)
    return container


@pytest.mark.parametrize("old_release", [False, True])
def test_reference_state_dict_loads_strictly_and_gives_identical_outputs(tmp_path, old_release):
    torch.manual_seed(1)
    reference = _reference_resnet_generator(ngf=8, n_blocks=9, track_running_stats=old_release)
    for p in reference.parameters():
        nn.init.normal_(p, 0, 0.05)
    path = tmp_path / "latest_net_G_A.pth"
    torch.save(reference.state_dict(), path)
    if old_release:
        assert any(k.endswith("running_mean") for k in torch.load(path, weights_only=True))

    ours = load_generator(path)  # architecture inferred from the keys
    assert ours.netG == "resnet_9blocks"
    reference_eval = _reference_resnet_generator(ngf=8, n_blocks=9, track_running_stats=False)
    reference_eval.load_state_dict(
        {
            k: v
            for k, v in reference.state_dict().items()
            if "running" not in k and "num_batches" not in k
        }
    )
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(ours(x), reference_eval.model(x))


def _runs(net: nn.Module, side: int, batch: int) -> tuple | None:
    """The output's spatial shape for a square input of `side` on the meta device (shapes only, no
    compute), or None."""
    try:
        return tuple(net(torch.empty(batch, 3, side, side, device="meta")).shape[2:])
    except (RuntimeError, ValueError):
        return None


@pytest.mark.parametrize(
    "net_g", ["resnet_1blocks", "unet_128", "unet_256"]
)  # the block count changes no size
@pytest.mark.parametrize("norm,batch", [("instance", 1), ("batch", 1), ("none", 2)])
def test_generator_size_rule_is_what_the_network_does(net_g, norm, batch):
    """architectures.generator_size_rule (what validation uses, without torch) against the network
    itself."""
    from cyclegan.architectures import generator_size_rule

    with torch.device("meta"):
        net = build_generator(net_g, 3, 3, 1, norm, use_dropout=False)
    multiple, smallest = generator_size_rule(net_g)
    # every side up to three multiples, and around the first multiples for the U-Nets' large ones
    sides = set(range(1, min(3 * multiple, 40) + 1)) | {
        k * multiple + d for k in (1, 2, 3) for d in (-1, 0, 1, multiple // 2)
    }
    for side in sorted(sides):
        ok = side % multiple == 0 and side >= smallest
        assert (_runs(net, side, batch) == (side, side)) == ok, (net_g, side)


@pytest.mark.parametrize(
    "net_d,n_layers", [("basic", 3), ("n_layers", 1), ("n_layers", 4), ("pixel", 3)]
)
def test_discriminator_smallest_side_is_what_the_network_does(net_d, n_layers):
    from cyclegan.architectures import discriminator_smallest_side

    with torch.device("meta"):
        net = build_discriminator(net_d, 3, 1, n_layers, "instance")
    smallest = discriminator_smallest_side(net_d, n_layers)
    assert _runs(net, smallest, 1) is not None and _runs(net, smallest - 1, 1) is None
    assert all(_runs(net, side, 1) is not None for side in range(smallest, smallest + 20))


def test_a_config_with_sizes_the_networks_cannot_take_is_refused():
    from cyclegan.errors import UserError

    for changes, field_name in [
        ({"crop_size": 250}, "crop_size"),
        ({"netG": "unet_256", "crop_size": 128}, "crop_size"),
        ({"crop_size": 16, "load_size": 16, "netG": "resnet_6blocks"}, "crop_size"),
        ({"preprocess": "scale_width", "load_size": 250}, "load_size"),
    ]:
        with pytest.raises(UserError, match=f"--{field_name}: "):
            TrainConfig(**changes)
    TrainConfig(crop_size=24, load_size=24)
    TrainConfig(netG="unet_128", crop_size=128, load_size=143)
