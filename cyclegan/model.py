"""The CycleGAN model: four networks, two optimizers, two image pools, one training step.

Update order per iteration (the paper's, via the reference implementation):
  1. G_A, G_B forward: fakes, reconstructions, identity images;
  2. generator loss with both discriminators frozen; one Adam step for both generators;
  3. discriminators on real vs. fakes from the history pools; one Adam step for both.

The generators are grouped in one module and the discriminators in another, so that
DDP (applied from outside, see `wrap`) sees exactly one forward and one backward per
group per step, however many times each network is used inside it.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable

import torch
from torch import nn

from .config import TrainConfig
from .losses import GANLoss, gradient_penalty, l1
from .metric_names import LOSS_NAMES
from .networks import define_networks
from .pool import ImagePool
from .schedules import build_scheduler

log = logging.getLogger(__name__)


class GeneratorPair(nn.Module):
    def __init__(self, G_A: nn.Module, G_B: nn.Module, identity: bool):
        super().__init__()
        self.G_A, self.G_B, self.identity = G_A, G_B, identity
        # Set by the speed options: 4 network calls on larger batches instead of 6 (see
        # _forward_batched).
        self.batched = False

    def forward(self, real_A: torch.Tensor, real_B: torch.Tensor) -> dict[str, torch.Tensor]:
        if self.batched and self.identity:
            return self._forward_batched(real_A, real_B)
        fake_B = self.G_A(real_A)
        fake_A = self.G_B(real_B)
        out = {
            "fake_B": fake_B,
            "rec_A": self.G_B(fake_B),
            "fake_A": fake_A,
            "rec_B": self.G_A(fake_A),
        }
        if self.identity:
            out["idt_A"] = self.G_A(real_B)  # G_A should leave a B image as it is
            out["idt_B"] = self.G_B(real_A)
        return out

    def _forward_batched(
        self, real_A: torch.Tensor, real_B: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """The same outputs from 4 calls: each generator takes its own domain's images and the
        other domain's (identity) as one batch. Fewer, larger kernels, which matters most at batch
        1; exact only for per-sample norms (instance, none), so the speed options never set it with
        batch norm."""
        n_A, n_B = real_A.shape[0], real_B.shape[0]
        fake_B, idt_A = self.G_A(torch.cat([real_A, real_B])).split([n_A, n_B])
        fake_A, idt_B = self.G_B(torch.cat([real_B, real_A])).split([n_B, n_A])
        return {
            "fake_B": fake_B,
            "rec_A": self.G_B(fake_B),
            "fake_A": fake_A,
            "rec_B": self.G_A(fake_A),
            "idt_A": idt_A,
            "idt_B": idt_B,
        }


class DiscriminatorPair(nn.Module):
    """D_A judges domain B, D_B judges domain A; each returns its predictions on the real images
    followed by those on the fakes. With per-sample norms (instance, none) real and fake images go
    through a discriminator as one batch, which gives the same numbers as two calls in fewer
    kernels; with batch norm (`separate_calls`) they go in two calls, as in the reference, so that
    real and fake images never share batch statistics."""

    def __init__(self, D_A: nn.Module, D_B: nn.Module, separate_calls: bool = False):
        super().__init__()
        self.D_A, self.D_B = D_A, D_B
        self.separate_calls = separate_calls

    def forward(self, real_A, real_B, fake_A, fake_B) -> tuple[torch.Tensor, torch.Tensor]:
        return self._judge(self.D_A, real_B, fake_B), self._judge(self.D_B, real_A, fake_A)

    def _judge(self, net: nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        if self.separate_calls:
            return torch.cat([net(real), net(fake)])
        return net(torch.cat([real, fake]))


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        from .errors import UserError

        raise UserError(
            f"--device {name}: CUDA is not available on this machine; use --device cpu or auto"
        )
    return device


class CycleGAN:
    def __init__(self, cfg: TrainConfig, device: torch.device | str = "cpu"):
        self.cfg = cfg
        self.device = torch.device(device)
        nets = define_networks(cfg)
        self.generators = GeneratorPair(
            nets["G_A"], nets["G_B"], identity=cfg.lambda_identity > 0
        ).to(self.device)
        self.discriminators = DiscriminatorPair(
            nets["D_A"], nets["D_B"], separate_calls=cfg.norm == "batch"
        ).to(self.device)
        self.memory_format = torch.contiguous_format
        # What the step calls; `wrap` may replace these with DDP (or compiled) versions.
        self.train_generators: nn.Module = self.generators
        self.train_discriminators: nn.Module = self.discriminators
        # The discriminators as the generator step calls them (frozen, no DDP); may be compiled.
        self.frozen_discriminators: tuple[nn.Module, nn.Module] = (nets["D_A"], nets["D_B"])
        # Set by the speed options: the whole step captured as CUDA graphs (see speed.GraphedStep).
        self.graphed_step: (
            Callable[[torch.Tensor, torch.Tensor], dict[str, torch.Tensor]] | None
        ) = None
        # Why the fast path (torch.compile, CUDA graphs) was given up for the plain eager step, if
        # it was.
        self.fast_path_fallback: str | None = None

        self.configure_optimizers()
        self.criterion = GANLoss(cfg.gan_mode)
        self.pool_A = ImagePool(cfg.pool_size, seed=cfg.seed * 2 + 1)  # fake A images, for D_B
        self.pool_B = ImagePool(cfg.pool_size, seed=cfg.seed * 2 + 2)  # fake B images, for D_A
        self.autocast_dtype: torch.dtype | None = None
        self.autocast_cache = True  # off under graph capture, as PyTorch's CUDA-graph notes ask
        self.scaler_G = torch.amp.GradScaler(self.device.type, enabled=False)
        self.scaler_D = torch.amp.GradScaler(self.device.type, enabled=False)

    # -- set-up ------------------------------------------------------------------------------
    @property
    def nets(self) -> dict[str, nn.Module]:
        """The plain (unwrapped) networks by their reference names."""
        return {
            "G_A": self.generators.G_A,
            "G_B": self.generators.G_B,
            "D_A": self.discriminators.D_A,
            "D_B": self.discriminators.D_B,
        }

    def configure_optimizers(self, fused: bool = False, capturable: bool = False) -> None:
        """(Re)build both Adams and their schedulers; call before training or loading a state.

        Plain: PyTorch's default Adam, as the reference. `fused`: one kernel per parameter group.
        `capturable`: state on the device, so the step can be captured in a CUDA graph.
        """
        cfg = self.cfg

        def adam(params) -> torch.optim.Adam:
            # A captured graph reads the learning rate from memory: a tensor lets the schedule reach
            # it.
            lr = torch.tensor(cfg.lr, device=self.device) if (fused or capturable) else cfg.lr
            extra = {"fused": True} if fused else {}
            return torch.optim.Adam(
                params, lr=lr, betas=(cfg.beta1, cfg.beta2), capturable=capturable, **extra
            )

        self.opt_G = adam(self.generators.parameters())
        self.opt_D = adam(self.discriminators.parameters())
        self.schedulers = [build_scheduler(self.opt_G, cfg), build_scheduler(self.opt_D, cfg)]

    def set_precision(self, precision: str) -> None:
        """fp32, bf16 or fp16 autocast; fp16 also scales the losses."""
        self.autocast_dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[
            precision
        ]
        fp16 = precision == "fp16"
        self.scaler_G = torch.amp.GradScaler(self.device.type, enabled=fp16)
        self.scaler_D = torch.amp.GradScaler(self.device.type, enabled=fp16)

    def set_channels_last(self, enabled: bool) -> None:
        self.memory_format = torch.channels_last if enabled else torch.contiguous_format
        self.generators.to(memory_format=self.memory_format)
        self.discriminators.to(memory_format=self.memory_format)

    def wrap(self, fn: Callable[[nn.Module], nn.Module]) -> None:
        """Apply `fn` (e.g. DDP, then torch.compile) to the generator and discriminator groups as
        the step calls them; successive calls compose."""
        self.train_generators = fn(self.train_generators)
        self.train_discriminators = fn(self.train_discriminators)

    def _autocast(self):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(
            self.device.type, dtype=self.autocast_dtype, cache_enabled=self.autocast_cache
        )

    # -- the training step --------------------------------------------------------------------
    def train_step(self, real_A: torch.Tensor, real_B: torch.Tensor) -> dict[str, torch.Tensor]:
        """One iteration; returns the 8 losses (detached, safe to keep across steps). Replays
        the captured CUDA graphs when the speed options set them up, else runs eagerly."""
        if self.graphed_step is not None:
            return self.graphed_step(real_A, real_B)
        return self.eager_step(real_A, real_B)

    def eager_step(self, real_A: torch.Tensor, real_B: torch.Tensor) -> dict[str, torch.Tensor]:
        g_losses, fake_A, fake_B = self.run_part(self.generator_update, real_A, real_B)
        fake_A, fake_B = self.pool_A.query(fake_A), self.pool_B.query(fake_B)
        loss_D_A, loss_D_B = self.run_part(
            self.discriminator_update, real_A, real_B, fake_A, fake_B
        )
        return {
            name: loss.detach()
            for name, loss in self.gather_losses(g_losses, loss_D_A, loss_D_B).items()
        }

    @property
    def compiled(self) -> bool:
        return any(
            hasattr(m, "_orig_mod")
            for m in (self.train_generators, self.train_discriminators, *self.frozen_discriminators)
        )

    def run_part(self, part: Callable, *args: torch.Tensor):
        """One part of the step (generator_update or discriminator_update). torch.compile fails, if
        it does, in the part's forward or backward, before its Adam step: nothing has changed yet,
        so the part runs again on the plain modules, and the run stays eager from then on."""
        if not self.compiled:
            return part(*args)
        try:
            return part(*args)
        except Exception as err:  # a real error in the step fails again, eagerly, and propagates
            self.fall_back_to_eager(f"torch.compile failed: {error_summary(err)}")
            return part(*args)

    def fall_back_to_eager(self, reason: str) -> None:
        """Give up the fast path for good: the plain (uncompiled) modules, no CUDA graphs. Weights,
        optimizer state and pools are the same objects: training continues from the same state."""
        self.train_generators = getattr(self.train_generators, "_orig_mod", self.train_generators)
        self.train_discriminators = getattr(
            self.train_discriminators, "_orig_mod", self.train_discriminators
        )
        self.frozen_discriminators = tuple(
            getattr(d, "_orig_mod", d) for d in self.frozen_discriminators
        )
        self.graphed_step = None
        if self.fast_path_fallback is None:
            log.warning(
                "%s; continuing with the plain eager step from the same state (same weights and "
                "optimizer state)",
                reason,
            )
            self.fast_path_fallback = reason

    @staticmethod
    def gather_losses(
        g_losses: dict[str, torch.Tensor], loss_D_A: torch.Tensor, loss_D_B: torch.Tensor
    ) -> dict[str, torch.Tensor]:
        """All 8 losses in LOSS_NAMES order."""
        losses = {**g_losses, "D_A": loss_D_A, "D_B": loss_D_B}
        return {name: losses[name] for name in LOSS_NAMES}

    def generator_update(
        self, real_A: torch.Tensor, real_B: torch.Tensor
    ) -> tuple[dict[str, torch.Tensor], torch.Tensor, torch.Tensor]:
        """Steps 1-2: generators forward, their loss with the discriminators frozen, one Adam step.
        Returns the six generator losses and the detached fakes (for the pools)."""
        cfg, gan = self.cfg, self.criterion
        D_A, D_B = self.frozen_discriminators

        # The discriminators' plain modules: no DDP sync needed, no gradient for their weights.
        self.discriminators.requires_grad_(False)
        with self._autocast():
            out = self.train_generators(real_A, real_B)
            loss_G_A = gan(D_A(out["fake_B"]), True)
            loss_G_B = gan(D_B(out["fake_A"]), True)
        loss_cycle_A = l1(out["rec_A"], real_A) * cfg.lambda_A
        loss_cycle_B = l1(out["rec_B"], real_B) * cfg.lambda_B
        if "idt_A" in out:
            loss_idt_A = l1(out["idt_A"], real_B) * cfg.lambda_B * cfg.lambda_identity
            loss_idt_B = l1(out["idt_B"], real_A) * cfg.lambda_A * cfg.lambda_identity
        else:
            loss_idt_A = loss_idt_B = torch.zeros((), device=real_A.device)
        loss_G = loss_G_A + loss_G_B + loss_cycle_A + loss_cycle_B + loss_idt_A + loss_idt_B
        self.opt_G.zero_grad(set_to_none=True)
        self.scaler_G.scale(loss_G).backward()
        self.scaler_G.step(self.opt_G)
        self.scaler_G.update()
        losses = {
            "G_A": loss_G_A,
            "cycle_A": loss_cycle_A,
            "idt_A": loss_idt_A,
            "G_B": loss_G_B,
            "cycle_B": loss_cycle_B,
            "idt_B": loss_idt_B,
        }
        return losses, out["fake_A"].detach(), out["fake_B"].detach()

    def discriminator_update(
        self, real_A: torch.Tensor, real_B: torch.Tensor, fake_A: torch.Tensor, fake_B: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Step 3: discriminators on real vs. (pooled) fakes, the objective halved; one Adam
        step."""
        cfg, gan = self.cfg, self.criterion
        self.discriminators.requires_grad_(True)
        with self._autocast():
            pred_A, pred_B = self.train_discriminators(real_A, real_B, fake_A, fake_B)
        n_B, n_A = real_B.shape[0], real_A.shape[0]
        loss_D_A = (gan(pred_A[:n_B], True) + gan(pred_A[n_B:], False)) * 0.5
        loss_D_B = (gan(pred_B[:n_A], True) + gan(pred_B[n_A:], False)) * 0.5
        if cfg.gan_mode == "wgangp":
            loss_D_A = loss_D_A + gradient_penalty(
                self.discriminators.D_A, real_B, fake_B, cfg.lambda_gp
            )
            loss_D_B = loss_D_B + gradient_penalty(
                self.discriminators.D_B, real_A, fake_A, cfg.lambda_gp
            )
        self.opt_D.zero_grad(set_to_none=True)
        self.scaler_D.scale(loss_D_A + loss_D_B).backward()
        self.scaler_D.step(self.opt_D)
        self.scaler_D.update()
        return loss_D_A, loss_D_B

    # -- after each epoch ---------------------------------------------------------------------
    def step_schedulers(self, epoch_loss_G: float) -> None:
        for scheduler in self.schedulers:
            if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                scheduler.step(epoch_loss_G)
            else:
                scheduler.step()

    @property
    def learning_rate(self) -> float:
        return float(self.opt_G.param_groups[0]["lr"])

    @torch.no_grad()
    def translate(self, images: torch.Tensor, direction: str = "AtoB") -> torch.Tensor:
        net = self.generators.G_A if direction == "AtoB" else self.generators.G_B
        was_training = net.training
        net.eval()
        try:
            with self._autocast():
                return net(images.to(memory_format=self.memory_format)).float()
        finally:
            net.train(was_training)

    # -- full training state ------------------------------------------------------------------
    def state_dict(self) -> dict:
        """Portable across speed options: learning rates are saved as plain numbers, whatever
        optimizer flavour (plain, fused, capturable) this run uses."""
        return {
            "nets": {name: net.state_dict() for name, net in self.nets.items()},
            "opt_G": _portable_optimizer_state(self.opt_G),
            "opt_D": _portable_optimizer_state(self.opt_D),
            "schedulers": [_plain_numbers(s.state_dict()) for s in self.schedulers],
            "scaler_G": self.scaler_G.state_dict(),
            "scaler_D": self.scaler_D.state_dict(),
            "pool_A": self.pool_A.state_dict(),
            "pool_B": self.pool_B.state_dict(),
        }

    def load_state_dict(self, state: dict) -> None:
        for name, net in self.nets.items():
            net.load_state_dict(state["nets"][name])
        _load_optimizer_state(self.opt_G, state["opt_G"])
        _load_optimizer_state(self.opt_D, state["opt_D"])
        for scheduler, s in zip(self.schedulers, state["schedulers"]):
            scheduler.load_state_dict(s)
        if state.get("scaler_G"):
            self.scaler_G.load_state_dict(state["scaler_G"])
            self.scaler_D.load_state_dict(state["scaler_D"])
        self.pool_A.load_state_dict(state["pool_A"], self.device)
        self.pool_B.load_state_dict(state["pool_B"], self.device)
        self._config_wins()
        if self.graphed_step is not None:
            self.graphed_step.reset()  # the optimizer state tensors are new: capture again

    def _config_wins(self) -> None:
        """Train on with this model's own hyperparameters whatever the loaded state was trained
        with: a population-based-training trial continues from another trial's state with mutated
        values. The loss weights are read from the config at each step; the learning rate keeps the
        schedule's position (it is scaled by the ratio of the initial rates) and each pool keeps at
        most pool_size of its images. With the same config (an ordinary resume) nothing changes."""
        for opt, scheduler in zip((self.opt_G, self.opt_D), self.schedulers):
            for group in opt.param_groups:
                initial = float(group.get("initial_lr", self.cfg.lr))
                if initial <= 0 or initial == self.cfg.lr:
                    continue
                ratio = self.cfg.lr / initial
                if isinstance(group["lr"], torch.Tensor):
                    group["lr"].mul_(ratio)
                else:
                    group["lr"] *= ratio
                group["initial_lr"] = self.cfg.lr
            if hasattr(
                scheduler, "base_lrs"
            ):  # the closed forms and the lambda schedules start from these
                scheduler.base_lrs = [self.cfg.lr] * len(scheduler.base_lrs)
                scheduler._last_lr = [float(group["lr"]) for group in opt.param_groups]
        for pool in (self.pool_A, self.pool_B):
            if pool.pool_size != self.cfg.pool_size:
                pool.pool_size = self.cfg.pool_size
                del pool.images[: max(0, len(pool.images) - self.cfg.pool_size)]


def error_summary(err: BaseException) -> str:
    text = str(err).strip()
    return f"{type(err).__name__}: {text.splitlines()[0][:300]}" if text else type(err).__name__


# Optimizer flags that belong to this run's implementation, not to the run that saved the state.
_IMPLEMENTATION_FLAGS = ("capturable", "fused", "foreach", "differentiable")


def _plain_numbers(value):
    """Single-element tensors (tensor learning rates) as floats, recursively."""
    if isinstance(value, torch.Tensor) and value.numel() == 1:
        return float(value)
    if isinstance(value, dict):
        return {k: _plain_numbers(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_plain_numbers(v) for v in value)
    return value


def _portable_optimizer_state(opt: torch.optim.Optimizer) -> dict:
    state = opt.state_dict()
    return {
        "state": state["state"],
        "param_groups": [_plain_numbers(g) for g in state["param_groups"]],
    }


def _load_optimizer_state(opt: torch.optim.Optimizer, saved: dict) -> None:
    """Load moments and step counts, keeping this optimizer's own flavour: its flags, and a tensor
    learning rate where it has one (torch then also places the step counts where they belong)."""
    groups = []
    for current, group in zip(opt.param_groups, saved["param_groups"]):
        group = {**group, **{k: current[k] for k in _IMPLEMENTATION_FLAGS if k in current}}
        for key in ("lr", "initial_lr"):
            if key in group:
                value = float(group[key])
                group[key] = (
                    torch.tensor(value, device=current[key].device)
                    if isinstance(current.get(key), torch.Tensor)
                    else value
                )
        groups.append(group)
    opt.load_state_dict({"state": saved["state"], "param_groups": groups})
