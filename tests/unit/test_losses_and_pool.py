"""Loss arithmetic against hand computations, the image pool, and the LR schedules."""

from __future__ import annotations

import copy
import math

import pytest
import torch
from torch import nn

from cyclegan.config import TrainConfig
from cyclegan.losses import GANLoss, gradient_penalty
from cyclegan.model import CycleGAN
from cyclegan.pool import ImagePool
from cyclegan.schedules import build_scheduler, linear_factor


def test_gan_losses_match_hand_computation():
    p = torch.tensor([[0.2, 0.8], [1.5, -0.5]])
    values = [0.2, 0.8, 1.5, -0.5]
    assert GANLoss("lsgan")(p, True).item() == pytest.approx(sum((v - 1) ** 2 for v in values) / 4)
    assert GANLoss("lsgan")(p, False).item() == pytest.approx(sum(v**2 for v in values) / 4)
    sig = [1 / (1 + math.exp(-v)) for v in values]
    assert GANLoss("vanilla")(p, True).item() == pytest.approx(
        -sum(math.log(s) for s in sig) / 4, rel=1e-5
    )
    assert GANLoss("vanilla")(p, False).item() == pytest.approx(
        -sum(math.log(1 - s) for s in sig) / 4, rel=1e-5
    )
    assert GANLoss("wgangp")(p, True).item() == pytest.approx(-sum(values) / 4)
    assert GANLoss("wgangp")(p, False).item() == pytest.approx(sum(values) / 4)


def test_gradient_penalty_is_zero_for_a_unit_gradient_critic():
    class Linear(nn.Module):  # D(x) = sum(w * x) with ||w|| = 1: gradient norm exactly 1
        def forward(self, x):
            w = torch.zeros_like(x[0])
            w.view(-1)[0] = 1.0
            return (x * w).flatten(1).sum(1)

    x, y = torch.randn(3, 1, 4, 4), torch.randn(3, 1, 4, 4)
    assert gradient_penalty(Linear(), x, y).item() == pytest.approx(0.0, abs=1e-6)


def test_training_step_losses_are_the_papers_objective():
    """Recompute every loss of one step by hand, from a copy of the model taken before the step."""
    torch.manual_seed(0)
    cfg = TrainConfig(
        netG="resnet_1blocks",
        ngf=4,
        ndf=4,
        pool_size=0,
        lambda_A=10,
        lambda_B=7,
        lambda_identity=0.5,
    )
    model = CycleGAN(cfg)
    before = copy.deepcopy(model)
    real_A, real_B = torch.rand(1, 3, 32, 32) * 2 - 1, torch.rand(1, 3, 32, 32) * 2 - 1
    losses = model.train_step(real_A, real_B)

    G_A, G_B, D_A, D_B = (before.nets[k] for k in ("G_A", "G_B", "D_A", "D_B"))
    mse, l1 = nn.functional.mse_loss, nn.functional.l1_loss
    with torch.no_grad():
        fake_B, fake_A = G_A(real_A), G_B(real_B)
        expected = {
            "G_A": mse(D_A(fake_B), torch.ones_like(D_A(fake_B))),
            "G_B": mse(D_B(fake_A), torch.ones_like(D_B(fake_A))),
            "cycle_A": l1(G_B(fake_B), real_A) * 10,
            "cycle_B": l1(G_A(fake_A), real_B) * 7,
            "idt_A": l1(G_A(real_B), real_B) * 7 * 0.5,
            "idt_B": l1(G_B(real_A), real_A) * 10 * 0.5,
            # the generator step does not touch the discriminators, so they are judged with their
            # old weights
            "D_A": 0.5
            * (
                mse(D_A(real_B), torch.ones_like(D_A(real_B)))
                + mse(D_A(fake_B), torch.zeros_like(D_A(fake_B)))
            ),
            "D_B": 0.5
            * (
                mse(D_B(real_A), torch.ones_like(D_B(real_A)))
                + mse(D_B(fake_A), torch.zeros_like(D_B(fake_A)))
            ),
        }
    for name, value in expected.items():
        assert losses[name].item() == pytest.approx(value.item(), rel=1e-4, abs=1e-6), name
    # both optimizers stepped once: every network moved
    for name in ("G_A", "G_B", "D_A", "D_B"):
        after = nn.utils.parameters_to_vector(model.nets[name].parameters())
        assert not torch.equal(
            after, nn.utils.parameters_to_vector(before.nets[name].parameters())
        ), name


def test_identity_weight_zero_turns_identity_loss_off():
    model = CycleGAN(TrainConfig(netG="resnet_1blocks", ngf=4, ndf=4, lambda_identity=0))
    losses = model.train_step(torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32))
    assert losses["idt_A"].item() == 0 and losses["idt_B"].item() == 0


def test_pool_of_size_zero_passes_images_through():
    images = torch.randn(3, 3, 4, 4)
    assert torch.equal(ImagePool(0).query(images), images)


def test_pool_fills_then_swaps_half_the_time():
    pool = ImagePool(4, seed=0)
    first = torch.arange(4.0).view(4, 1, 1, 1)
    assert torch.equal(pool.query(first), first)  # filling: new images come back
    returned_old = 0
    for i in range(200):
        new = torch.full((1, 1, 1, 1), 100.0 + i)
        out = pool.query(new)
        if out.item() != new.item():
            returned_old += 1
            assert new.item() in [
                img.item() for img in pool.images
            ]  # the new image took the returned one's place
    assert 70 < returned_old < 130  # probability 1/2
    assert len(pool.images) == 4


def test_pool_state_round_trip_reproduces_its_choices():
    pool = ImagePool(3, seed=5)
    for i in range(5):
        pool.query(torch.full((1, 1, 2, 2), float(i)))
    clone = ImagePool(3, seed=99)
    clone.load_state_dict(pool.state_dict())
    for i in range(20):
        x = torch.full((1, 1, 2, 2), 50.0 + i)
        assert torch.equal(pool.query(x), clone.query(x))


def _lrs(cfg: TrainConfig, epochs: int) -> list[float]:
    opt = torch.optim.Adam([nn.Parameter(torch.zeros(1))], lr=cfg.lr)
    scheduler = build_scheduler(opt, cfg)
    lrs = []
    for _ in range(epochs):
        lrs.append(opt.param_groups[0]["lr"])  # the lr used during this epoch
        opt.step()
        scheduler.step(1.0) if cfg.lr_policy == "plateau" else scheduler.step()
    return lrs


def test_linear_schedule_matches_the_paper():
    lrs = _lrs(TrainConfig(), 200)
    assert lrs[0] == lrs[99] == pytest.approx(2e-4)  # constant for 100 epochs
    assert lrs[100] == pytest.approx(2e-4 * (1 - 1 / 101))  # then linear decay ...
    assert lrs[149] == pytest.approx(2e-4 * (1 - 50 / 101))
    assert lrs[199] == pytest.approx(2e-4 / 101)  # ... towards zero over 100 more
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))
    assert linear_factor(200, 100, 100) == pytest.approx(1 / 101)


def test_linear_schedule_continues_from_epoch_count():
    lrs = _lrs(TrainConfig(epoch_count=151), 50)
    assert lrs[0] == pytest.approx(2e-4 * (1 - 51 / 101))


def test_other_policies():
    step = _lrs(TrainConfig(lr_policy="step", lr_decay_iters=10), 25)
    assert (
        step[9] == pytest.approx(2e-4)
        and step[10] == pytest.approx(2e-5)
        and step[20] == pytest.approx(2e-6)
    )
    cosine = _lrs(TrainConfig(lr_policy="cosine", n_epochs=5, n_epochs_decay=5), 10)
    assert (
        cosine[0] == pytest.approx(2e-4) and cosine[5] == pytest.approx(1e-4) and cosine[9] < 1e-5
    )
    plateau = _lrs(TrainConfig(lr_policy="plateau"), 10)  # a constant loss: no improvement
    assert plateau[0] == pytest.approx(2e-4) and plateau[-1] == pytest.approx(4e-5)


@pytest.mark.parametrize("norm", ["batch", "instance"])
def test_discriminators_judge_real_and_fake_images_as_the_reference_does(norm):
    """The reference's backward_D_basic: pred_real = netD(real), pred_fake = netD(fake), two calls,
    so that with batch norm real and fake images never share batch statistics. The losses, the
    gradients that the Adam step takes, and batch norm's running statistics must all be the
    reference's."""
    torch.manual_seed(0)
    cfg = TrainConfig(netG="resnet_1blocks", ngf=4, ndf=8, norm=norm, pool_size=0)
    model = CycleGAN(cfg)
    reference = copy.deepcopy(model.nets)
    real_A, real_B, fake_A, fake_B = (torch.rand(2, 3, 32, 32) * 2 - 1 for _ in range(4))
    loss_D_A, loss_D_B = model.discriminator_update(real_A, real_B, fake_A, fake_B)

    mse = nn.functional.mse_loss
    losses = []
    for net, real, fake in ((reference["D_A"], real_B, fake_B), (reference["D_B"], real_A, fake_A)):
        pred_real, pred_fake = net(real), net(fake.detach())
        losses.append(
            (
                mse(pred_real, torch.ones_like(pred_real))
                + mse(pred_fake, torch.zeros_like(pred_fake))
            )
            * 0.5
        )
    (losses[0] + losses[1]).backward()

    assert loss_D_A.item() == pytest.approx(
        losses[0].item(), rel=1e-5
    ) and loss_D_B.item() == pytest.approx(losses[1].item(), rel=1e-5)
    for name in ("D_A", "D_B"):
        ours, theirs = (
            dict(model.nets[name].named_parameters()),
            dict(reference[name].named_parameters()),
        )
        for key, param in theirs.items():
            # atol: a conv bias before instance norm has a zero gradient, up to rounding
            assert torch.allclose(ours[key].grad, param.grad, rtol=1e-4, atol=1e-5), (
                f"{name}.{key}.grad"
            )
        ours, theirs = dict(model.nets[name].named_buffers()), dict(reference[name].named_buffers())
        assert ours.keys() == theirs.keys() and (norm != "batch" or theirs)
        for key, buffer in theirs.items():  # batch norm: running mean and variance after both calls
            assert torch.allclose(ours[key].float(), buffer.float(), rtol=1e-5, atol=1e-7), (
                f"{name}.{key}"
            )
    if (
        norm == "batch"
    ):  # one concatenated batch would mix the statistics: this test tells the two apart
        with torch.no_grad():
            net = copy.deepcopy(model.nets["D_A"])
            mixed, separate = (
                net(torch.cat([real_B, fake_B])),
                torch.cat([net(real_B), net(fake_B)]),
            )
        assert not torch.allclose(mixed, separate, atol=1e-3)
