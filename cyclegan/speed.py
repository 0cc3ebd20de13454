"""Speed options: resolve `auto` per device and apply them to a model.

On CPU everything resolves to the plain eager fp32 step; on CUDA to bf16 autocast,
channels-last and torch.compile, with the whole step captured as CUDA graphs at batch 1
(where launching thousands of small kernels from the host is the bottleneck).
The paper's arithmetic and update order never change: only how the kernels run.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from .config import TrainConfig
from .errors import UserError
from .metric_names import LOSS_NAMES
from .model import CycleGAN, GeneratorPair, error_summary

log = logging.getLogger(__name__)

# DDP gradient buckets (MB) per network group; docs/PERFORMANCE.md explains the sizes.
DDP_BUCKET_MB = {"generators": 16, "discriminators": 8}


@dataclass(frozen=True)
class SpeedOptions:
    precision: str
    channels_last: bool
    compile: str
    cuda_graphs: bool

    def __str__(self) -> str:
        return (
            f"precision={self.precision} channels_last={self.channels_last} "
            f"compile={self.compile} cuda_graphs={self.cuda_graphs}"
        )

    @property
    def plain(self) -> bool:
        """The reference implementation's step: eager fp32, nothing else."""
        return (
            self.precision == "fp32"
            and not self.channels_last
            and self.compile == "none"
            and not self.cuda_graphs
        )


def resolve_speed_options(cfg: TrainConfig, device: torch.device) -> SpeedOptions:
    cuda = device.type == "cuda"
    precision = cfg.precision if cfg.precision != "auto" else ("bf16" if cuda else "fp32")
    channels_last = cfg.channels_last == "true" or (cfg.channels_last == "auto" and cuda)
    compile_mode = cfg.compile if cfg.compile != "auto" else ("default" if cuda else "none")
    if cfg.cuda_graphs == "true" and not cuda:
        raise UserError(
            "--cuda_graphs true needs a CUDA device; use --cuda_graphs auto or false on CPU"
        )
    if precision == "fp16" and not cuda:
        raise UserError("--precision fp16 needs a CUDA device; use fp32 or bf16 on CPU")
    if cfg.cuda_graphs == "true" and precision == "fp16":
        # GradScaler decides on the host, every step, whether to skip it: not capturable.
        raise UserError(
            "--cuda_graphs true does not work with --precision fp16 (its loss scaler syncs with "
            "the host "
            "every step); use --precision bf16, or --cuda_graphs false"
        )
    graphs = cfg.cuda_graphs == "true" or (
        cfg.cuda_graphs == "auto" and cuda and cfg.batch_size == 1 and precision != "fp16"
    )
    return SpeedOptions(precision, channels_last, compile_mode, graphs)


def apply_speed_options(
    model: CycleGAN,
    cfg: TrainConfig,
    device: torch.device,
    wrap: Callable[[nn.Module], nn.Module] | None = None,
) -> SpeedOptions:
    """Set precision and memory format, wrap (DDP) and compile the network groups, pick the
    optimizer flavour and, with CUDA graphs, make `model.train_step` replay the captured step.
    Call on a fresh model, before loading a training state."""
    options = resolve_speed_options(cfg, device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = (
            True  # fixed shapes: time cuDNN's algorithms once, keep the fastest
        )
    model.set_precision(options.precision)
    model.set_channels_last(options.channels_last)
    # Fewer, larger generator calls: same numbers for per-sample norms (batch norm's statistics
    # would change).
    model.generators.batched = not options.plain and cfg.norm != "batch"

    if wrap is not None:
        model.wrap(wrap)
        if options.cuda_graphs and isinstance(model.train_generators, DistributedDataParallel):
            if cfg.cuda_graphs == "true":
                raise UserError(
                    "--cuda_graphs true is not supported with multi-GPU DDP yet; use --cuda_graphs "
                    "auto or false"
                )
            log.info(
                "CUDA graphs are off under DDP (auto); the step runs eagerly with overlapped "
                "all-reduce"
            )
            options = dataclasses.replace(options, cuda_graphs=False)

    if options.compile != "none":
        _compile(model, options)
    model.configure_optimizers(
        fused=device.type == "cuda" and not options.plain, capturable=options.cuda_graphs
    )
    if options.cuda_graphs:
        model.autocast_cache = False
        model.graphed_step = GraphedStep(model)
    return options


def _compile(model: CycleGAN, options: SpeedOptions) -> None:
    """torch.compile both groups as the step calls them, and the frozen discriminators of the
    generator step. `compile` chooses kernels only; capture is `cuda_graphs`' job: inductor's own
    graphs (in its max-autotune mode) would capture network calls, not the step, would sit inside
    ours, and reuse output memory the pools keep across steps."""
    mode = None if options.compile == "default" else "max-autotune-no-cudagraphs"

    def compile_module(module: nn.Module) -> nn.Module:
        return torch.compile(module, mode=mode)

    model.wrap(compile_module)
    model.frozen_discriminators = tuple(compile_module(d) for d in model.frozen_discriminators)


class GraphedStep:
    """The whole training step, both Adam steps included, as two CUDA graphs: the generator part,
    then, after the image pools have made their random choice on the host, the discriminator part.

    The first `warmup` calls run eagerly on a side stream (lazy initialisation, cuDNN benchmarking,
    torch.compile, Adam's state); the next call captures both parts and replays them. Every call is
    one real training step. A batch of another shape (an epoch's smaller last batch) runs eagerly.

    If capture or a replay fails, the model falls back to the plain eager step for good
    (CycleGAN.fall_back_to_eager) and that call's step still happens, once: a failed capture ran
    nothing; a failed generator replay runs the whole step eagerly; a failed discriminator replay
    runs the discriminator part eagerly on the same pooled fakes.
    """

    def __init__(self, model: CycleGAN, warmup: int = 3):
        self.model, self.warmup = model, warmup
        self.stream = torch.cuda.Stream(model.device)
        self.reset()

    def reset(self) -> None:
        """Forget the captured graphs (e.g. after loading an optimizer state): warm up and capture
        again."""
        self.calls = 0
        self.shapes: tuple[torch.Size, torch.Size] | None = None
        self.graphs: tuple[torch.cuda.CUDAGraph, torch.cuda.CUDAGraph] | None = None
        # Static tensors of the last capture: dropped first, so two captures never hold memory at
        # once.
        self.real_A = self.real_B = self.fake_A_out = self.fake_B_out = self.fake_A_in = (
            self.fake_B_in
        ) = None
        self.g_losses: dict[str, torch.Tensor] = {}
        self.d_losses: tuple[torch.Tensor, ...] = ()

    def __call__(self, real_A: torch.Tensor, real_B: torch.Tensor) -> dict[str, torch.Tensor]:
        shapes = (real_A.shape, real_B.shape)
        if self.shapes is None:
            self.shapes = shapes
        if shapes != self.shapes:
            return self.model.eager_step(real_A, real_B)
        with torch.cuda.device(
            self.model.device
        ):  # streams and capture on the model's GPU, e.g. --device cuda:1
            if self.graphs is None and self.calls < self.warmup:
                self.calls += 1
                return self._warm_up(real_A, real_B)
            if self.graphs is None:
                try:
                    self._capture(real_A, real_B)
                except Exception as err:
                    self.reset()
                    self.model.fall_back_to_eager(
                        f"CUDA-graph capture failed: {error_summary(err)}"
                    )
                    return self.model.eager_step(real_A, real_B)
            return self._replay(real_A, real_B)

    def _warm_up(self, real_A: torch.Tensor, real_B: torch.Tensor) -> dict[str, torch.Tensor]:
        current = torch.cuda.current_stream(self.model.device)
        self.stream.wait_stream(current)
        with torch.cuda.stream(self.stream):
            losses = self.model.eager_step(real_A, real_B)
        current.wait_stream(self.stream)
        return losses

    def _capture(self, real_A: torch.Tensor, real_B: torch.Tensor) -> None:
        model = self.model
        # Static inputs: each replay reads these addresses, so new batches are copied into them.
        self.real_A, self.real_B = real_A.clone(), real_B.clone()
        generator_graph, (g_losses, self.fake_A_out, self.fake_B_out) = self._capture_part(
            model.generator_update, self.real_A, self.real_B
        )
        self.fake_A_in, self.fake_B_in = (
            torch.empty_like(self.fake_A_out),
            torch.empty_like(self.fake_B_out),
        )
        # One memory pool: the graphs always replay in this order, and nothing of the discriminator
        # graph's memory has to outlive the next generator replay (losses are copied out at once).
        discriminator_graph, d_losses = self._capture_part(
            model.discriminator_update,
            self.real_A,
            self.real_B,
            self.fake_A_in,
            self.fake_B_in,
            pool=generator_graph.pool(),
        )
        # Detached views of the same memory: reading them must not chain autograd nodes step after
        # step.
        self.g_losses = {name: loss.detach() for name, loss in g_losses.items()}
        self.d_losses = tuple(loss.detach() for loss in d_losses)
        self.graphs = (generator_graph, discriminator_graph)
        log.info("captured the training step as CUDA graphs (batch %d)", real_A.shape[0])

    @staticmethod
    def _capture_part(fn: Callable, *args: torch.Tensor, pool=None):
        """Capture `fn(*args)` (nothing runs); return the graph and its static outputs."""
        graph = torch.cuda.CUDAGraph()
        # thread_local: the DataLoader's pin-memory thread may allocate pinned memory meanwhile,
        # which would invalidate a "global" capture; the autograd thread still launches into the
        # captured stream.
        with torch.cuda.graph(graph, pool=pool, capture_error_mode="thread_local"):
            outputs = fn(*args)
        return graph, outputs

    def _replay(self, real_A: torch.Tensor, real_B: torch.Tensor) -> dict[str, torch.Tensor]:
        model = self.model
        generator_graph, discriminator_graph = self.graphs
        self.real_A.copy_(real_A)
        self.real_B.copy_(real_B)
        try:
            generator_graph.replay()
        except Exception as err:
            model.fall_back_to_eager(f"CUDA-graph replay failed: {error_summary(err)}")
            return model.eager_step(real_A, real_B)
        # The pools keep clones: the generator graph overwrites its outputs on the next replay.
        self.fake_A_in.copy_(model.pool_A.query(self.fake_A_out))
        self.fake_B_in.copy_(model.pool_B.query(self.fake_B_out))
        try:
            discriminator_graph.replay()
            d_losses = self.d_losses
        except (
            Exception
        ) as err:  # the generators have stepped: only the discriminators' part is left
            model.fall_back_to_eager(f"CUDA-graph replay failed: {error_summary(err)}")
            d_losses = model.run_part(
                model.discriminator_update,
                real_A,
                real_B,
                self.fake_A_in.clone(),
                self.fake_B_in.clone(),
            )
        losses = model.gather_losses(self.g_losses, *d_losses)
        values = torch.stack([losses[name] for name in LOSS_NAMES])  # one copy out of graph memory
        return dict(zip(LOSS_NAMES, values.unbind()))


def ddp_options(module: nn.Module) -> dict:
    """DistributedDataParallel settings for one network group (`GeneratorPair` or
    `DiscriminatorPair`).

    Buckets smaller than DDP's 25 MB default, so that one network's gradients are sent while the
    other's backward still runs: at 25 MB, once DDP has re-bucketed in gradient-ready order, D_B's
    and D_A's gradients share one ~21 MB bucket that can only go when D_A's backward has ended, and
    the generators' last bucket (sent after everything) holds up to 25 MB. Gradients are views into
    the buckets (no extra copy). Buffer broadcasting stays DDP's default: a no-op for instance norm
    (no buffers), right for batch norm. docs/PERFORMANCE.md has the numbers."""
    group = "generators" if isinstance(module, GeneratorPair) else "discriminators"
    return {"bucket_cap_mb": DDP_BUCKET_MB[group], "gradient_as_bucket_view": True}


def ddp_wrap(device: torch.device) -> Callable[[nn.Module], nn.Module]:
    """A `wrap` for Trainer / apply_speed_options: DDP with `ddp_options` on an initialised process
    group."""

    def wrap(module: nn.Module) -> nn.Module:
        device_ids = (
            [device.index if device.index is not None else torch.cuda.current_device()]
            if device.type == "cuda"
            else None
        )
        return DistributedDataParallel(module, device_ids=device_ids, **ddp_options(module))

    return wrap
