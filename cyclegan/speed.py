"""Speed options: resolve `auto` per device and apply them to a model.

On CPU everything resolves to the plain eager fp32 step; on CUDA to bf16 autocast,
channels-last and torch.compile, with CUDA-graph capture at batch 1.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from .config import TrainConfig
from .errors import UserError


@dataclass(frozen=True)
class SpeedOptions:
    precision: str
    channels_last: bool
    compile: str
    cuda_graphs: bool

    def __str__(self) -> str:
        return (f"precision={self.precision} channels_last={self.channels_last} "
                f"compile={self.compile} cuda_graphs={self.cuda_graphs}")


def resolve_speed_options(cfg: TrainConfig, device: torch.device) -> SpeedOptions:
    cuda = device.type == "cuda"
    precision = cfg.precision if cfg.precision != "auto" else ("bf16" if cuda else "fp32")
    channels_last = cfg.channels_last == "true" or (cfg.channels_last == "auto" and cuda)
    compile_mode = cfg.compile if cfg.compile != "auto" else ("default" if cuda else "none")
    graphs = cfg.cuda_graphs == "true" or (cfg.cuda_graphs == "auto" and cuda and cfg.batch_size == 1)
    if graphs and not cuda:
        raise UserError("--cuda_graphs true needs a CUDA device; use --cuda_graphs auto or false on CPU")
    if precision == "fp16" and not cuda:
        raise UserError("--precision fp16 needs a CUDA device; use fp32 or bf16 on CPU")
    return SpeedOptions(precision, channels_last, compile_mode, graphs)


def apply_speed_options(model, cfg: TrainConfig, device: torch.device,
                        wrap: Callable[[nn.Module], nn.Module] | None = None) -> SpeedOptions:
    """Set precision and memory format, then wrap (DDP) and compile the network groups."""
    options = resolve_speed_options(cfg, device)
    model.set_precision(options.precision)
    model.set_channels_last(options.channels_last)

    def prepare(module: nn.Module) -> nn.Module:
        module = wrap(module) if wrap else module
        if options.compile != "none":
            module = torch.compile(module, mode=None if options.compile == "default" else options.compile)
        return module

    if wrap or options.compile != "none":
        model.wrap(prepare)
    return options
