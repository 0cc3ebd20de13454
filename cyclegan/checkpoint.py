"""Checkpoint files.

- `<prefix>_net_<G_A|G_B|D_A|D_B>.pth`: plain state_dicts in the reference
  implementation's layout (`latest_net_G_A.pth`, `5_net_G_A.pth`, ...).
- `latest_state.pt`: the full training state (networks, optimizers, schedulers,
  pools, RNG, epoch, config) from which `--continue_train` resumes exactly.

Every file is written to a temporary name and renamed into place, so a crash
never leaves a half-written checkpoint under a real name. Everything is read
with `weights_only=True`.
"""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

import torch
from torch import nn

from .config import TrainConfig
from .errors import UserError
from .networks import build_generator

STATE_FILE = "latest_state.pt"
STATE_FORMAT = 1
NET_NAMES = ("G_A", "G_B", "D_A", "D_B")


def atomic_save(obj, path: Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_file(path: Path):
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: checkpoint file not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # corrupt, truncated, or not a torch file
        raise UserError(f"{path}: not a readable checkpoint ({err.__class__.__name__}: {str(err)[:200]})") from None


def save_networks(directory: Path, prefix: str | int, nets: dict[str, nn.Module]) -> None:
    for name, net in nets.items():
        state = {k: v.detach().cpu() for k, v in net.state_dict().items()}
        atomic_save(state, Path(directory) / f"{prefix}_net_{name}.pth")


def clean_state_dict(state: dict[str, torch.Tensor], net: nn.Module) -> dict[str, torch.Tensor]:
    """Adapt a reference-implementation state_dict to `net`: drop a DataParallel
    `module.` prefix and the InstanceNorm running-stat keys old releases carry."""
    state = {k.removeprefix("module."): v for k, v in state.items()}
    modules = dict(net.named_modules())
    cleaned = {}
    for key, value in state.items():
        owner, _, attr = key.rpartition(".")
        module = modules.get(owner)
        if (isinstance(module, nn.InstanceNorm2d) and attr in ("running_mean", "running_var", "num_batches_tracked")
                and getattr(module, attr, None) is None):
            continue
        cleaned[key] = value
    return cleaned


def load_network(net: nn.Module, path: Path) -> nn.Module:
    state = load_file(path)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"{path}: not a network state_dict")
    try:
        net.load_state_dict(clean_state_dict(state, net), strict=True)
    except RuntimeError as err:
        raise UserError(f"{path}: does not fit the network ({str(err).splitlines()[0]}); "
                        "check --netG/--ngf/--norm or let them be inferred") from None
    return net


def infer_generator_options(state: dict[str, torch.Tensor]) -> dict:
    """Guess netG, ngf, norm, input_nc and output_nc from a generator state_dict's keys."""
    state = {k.removeprefix("module."): v for k, v in state.items()}
    blocks = {int(m.group(1)) for k in state if (m := re.match(r"model\.(\d+)\.conv_block\.", k))}
    if blocks:
        first_conv = state["model.1.weight"]
        last_index = max(int(m.group(1)) for k in state if (m := re.match(r"model\.(\d+)\.weight$", k)))
        norm = "batch" if "model.2.weight" in state else ("instance" if "model.1.bias" in state else "none")
        return {"netG": f"resnet_{len(blocks)}blocks", "ngf": first_conv.shape[0], "norm": norm,
                "input_nc": first_conv.shape[1], "output_nc": state[f"model.{last_index}.weight"].shape[0]}
    if "model.model.0.weight" in state:
        depth = max(k.count("model.") for k in state)  # 8 for unet_128's innermost keys, 9 for unet_256
        first_conv = state["model.model.0.weight"]
        outer = state["model.model.3.weight"]  # ConvTranspose2d: (in, out, k, k)
        norm = ("batch" if "model.model.1.model.2.weight" in state
                else "instance" if "model.model.1.model.1.bias" in state else "none")
        return {"netG": "unet_256" if depth >= 9 else "unet_128", "ngf": first_conv.shape[0], "norm": norm,
                "input_nc": first_conv.shape[1], "output_nc": outer.shape[1]}
    raise UserError("cannot tell the generator architecture from the checkpoint; pass --netG, --ngf and --norm")


def load_generator(path: str | Path, netG: str | None = None, ngf: int | None = None, norm: str | None = None,
                   input_nc: int | None = None, output_nc: int | None = None, dropout: bool = False,
                   device: str | torch.device = "cpu") -> nn.Module:
    """Build and load a generator from this project's or the reference's `*_net_G_*.pth`
    (or `latest_state.pt`, taking G_A). Options not given are inferred from the file."""
    state = load_file(Path(path))
    if isinstance(state, dict) and "nets" in state:
        state = state["nets"]["G_A"]
    guessed = infer_generator_options(state) if None in (netG, ngf, norm, input_nc, output_nc) else {}
    opts = {"netG": netG, "ngf": ngf, "norm": norm, "input_nc": input_nc, "output_nc": output_nc}
    opts = {k: (v if v is not None else guessed[k]) for k, v in opts.items()}
    net = build_generator(opts["netG"], opts["input_nc"], opts["output_nc"], opts["ngf"], opts["norm"], dropout)
    try:
        net.load_state_dict(clean_state_dict(state, net), strict=True)
    except RuntimeError as err:
        raise UserError(f"{path}: does not fit {opts['netG']} (ngf={opts['ngf']}, norm={opts['norm']}): "
                        f"{str(err).splitlines()[0]}") from None
    net.netG = opts["netG"]
    return net.to(device).eval()


def rng_state() -> dict:
    # Data augmentation and the pools have their own seeded generators; this covers the rest
    # (dropout, the gradient-penalty mixes).
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_training_state(path: Path, model_state: dict, epoch: int, cfg: TrainConfig, extra: dict | None = None) -> None:
    atomic_save({"format": STATE_FORMAT, "epoch": epoch, "config": cfg.to_dict(), "model": model_state,
                 "rng": rng_state(), "extra": extra or {}}, path)


def load_training_state(path: Path) -> dict:
    state = load_file(path)
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise UserError(f"{path}: not a training-state checkpoint of this version")
    return state
