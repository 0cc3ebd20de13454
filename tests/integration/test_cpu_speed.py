"""On CPU, our training step must be no slower than a plain eager PyTorch step of the same
networks."""

from __future__ import annotations

import copy
import statistics
import time

import torch
from torch import nn

from cyclegan.config import TrainConfig
from cyclegan.model import CycleGAN


def plain_step(nets, opt_G, opt_D, real_A, real_B):
    """The reference implementation's step, written plainly: separate calls, no tricks."""
    G_A, G_B, D_A, D_B = nets
    mse, l1 = nn.functional.mse_loss, nn.functional.l1_loss
    fake_B, fake_A = G_A(real_A), G_B(real_B)
    rec_A, rec_B = G_B(fake_B), G_A(fake_A)
    idt_A, idt_B = G_A(real_B), G_B(real_A)
    for p in list(D_A.parameters()) + list(D_B.parameters()):
        p.requires_grad_(False)
    pa, pb = D_A(fake_B), D_B(fake_A)
    loss_G = (
        mse(pa, torch.ones_like(pa))
        + mse(pb, torch.ones_like(pb))
        + 10 * l1(rec_A, real_A)
        + 10 * l1(rec_B, real_B)
        + 5 * l1(idt_A, real_B)
        + 5 * l1(idt_B, real_A)
    )
    opt_G.zero_grad()
    loss_G.backward()
    opt_G.step()
    for p in list(D_A.parameters()) + list(D_B.parameters()):
        p.requires_grad_(True)
    opt_D.zero_grad()
    for D, real, fake in ((D_A, real_B, fake_B), (D_B, real_A, fake_A)):
        pr, pf = D(real), D(fake.detach())
        (0.5 * (mse(pr, torch.ones_like(pr)) + mse(pf, torch.zeros_like(pf)))).backward()
    opt_D.step()


def _time(fn, n: int) -> float:
    start = time.perf_counter()
    for _ in range(n):
        fn()
    return (time.perf_counter() - start) / n


def test_training_step_is_not_slower_than_plain_eager():
    torch.manual_seed(0)
    cfg = TrainConfig(netG="resnet_3blocks", ngf=16, ndf=16, pool_size=50)
    model = CycleGAN(cfg)
    nets = [copy.deepcopy(model.nets[k]) for k in ("G_A", "G_B", "D_A", "D_B")]
    opt_G = torch.optim.Adam(
        list(nets[0].parameters()) + list(nets[1].parameters()), lr=2e-4, betas=(0.5, 0.999)
    )
    opt_D = torch.optim.Adam(
        list(nets[2].parameters()) + list(nets[3].parameters()), lr=2e-4, betas=(0.5, 0.999)
    )
    real_A, real_B = torch.rand(1, 3, 64, 64) * 2 - 1, torch.rand(1, 3, 64, 64) * 2 - 1

    ours = lambda: model.train_step(real_A, real_B)  # noqa: E731
    plain = lambda: plain_step(nets, opt_G, opt_D, real_A, real_B)  # noqa: E731
    _time(ours, 3), _time(plain, 3)  # warm-up
    ours_times, plain_times = [], []
    for _ in range(7):  # interleaved, so load changes hit both alike
        ours_times.append(_time(ours, 4))
        plain_times.append(_time(plain, 4))
    ratio = statistics.median(ours_times) / statistics.median(plain_times)
    print(
        f"ours {statistics.median(ours_times) * 1e3:.1f} ms, plain "
        f"{statistics.median(plain_times) * 1e3:.1f} ms, ratio {ratio:.2f}"
    )
    assert ratio <= 1.10
