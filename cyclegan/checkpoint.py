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

import errno
import os
import pickle
import re
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .architectures import recognise_generator
from .config import TrainConfig
from .errors import UserError
from .networks import build_generator
from .run_files import network_file

STATE_FORMAT = 1
MAX_KEYS_SHOWN = 5  # in a message about keys that do not fit
_BLOCK_KEY = re.compile(
    r"^model\.(\d+)\.block\."
)  # residual blocks named `block` (e.g. vintagify) are our `conv_block`


def atomic_save(obj, path: Path) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(err, OSError) and err.errno in FULL_DISK:
            raise full_disk(path, err) from None
        if isinstance(err, RuntimeError) and any(w in str(err) for w in TORCH_WRITE_FAILED):
            raise full_disk(path, err) from None  # torch's zip writer hides the OSError
        raise


FULL_DISK = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
# What torch's zip writer says when a write fails (ENOSPC, EFBIG): it keeps no errno.
TORCH_WRITE_FAILED = ("file write failed", "unexpected pos")


def full_disk(path: Path, err: BaseException) -> UserError:
    """Writing `path` failed for want of space: what is kept, and what to do."""
    kept = (
        f"the previous {path.name} is intact"
        if path.exists()
        else f"nothing was written as {path.name}"
    )
    free = shutil.disk_usage(path.parent).free
    return UserError(
        f"{path.parent}: no room to write {path.name} ({_first_line(err)}; "
        f"{free / 1e6:.1f} MB free); {kept}. Free some space or pass another --checkpoints_dir, "
        "then continue with --continue_train"
    )


def load_file(path: Path):
    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: checkpoint file not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        refused = re.search(r"Unsupported global: GLOBAL (\S+)", str(err))
        if refused:  # a pickle of arbitrary Python objects: never rebuilt here
            raise UserError(
                f"{path}: holds a Python object ({refused.group(1)}) that safe loading "
                f"(weights_only=True) refuses; "
                "only files of tensors and plain containers are read"
            ) from None
        raise UserError(f"{path}: {_UNREADABLE}") from None
    except Exception as err:  # corrupt, truncated, or not a torch file
        raise UserError(
            f"{path}: {_UNREADABLE} ({err.__class__.__name__}: {_first_line(err)})"
        ) from None


_UNREADABLE = "not a readable PyTorch checkpoint (truncated, corrupt, or another kind of file)"


def _first_line(err: Exception) -> str:
    return (str(err).strip().splitlines() or [err.__class__.__name__])[0][:200]


def save_networks(directory: Path, prefix: str | int, nets: dict[str, nn.Module]) -> None:
    for name, net in nets.items():
        state = {k: v.detach().cpu() for k, v in net.state_dict().items()}
        atomic_save(state, Path(directory) / network_file(prefix, name))


def clean_state_dict(state: dict[str, torch.Tensor], net: nn.Module) -> dict[str, torch.Tensor]:
    """Adapt a reference-implementation state_dict to `net`: drop a DataParallel
    `module.` prefix and the InstanceNorm running-stat keys old releases carry."""
    state = {k.removeprefix("module."): v for k, v in state.items()}
    modules = dict(net.named_modules())
    cleaned = {}
    for key, value in state.items():
        owner, _, attr = key.rpartition(".")
        module = modules.get(owner)
        if (
            isinstance(module, nn.InstanceNorm2d)
            and attr in ("running_mean", "running_var", "num_batches_tracked")
            and getattr(module, attr, None) is None
        ):
            continue
        cleaned[key] = value
    return cleaned


def load_network(net: nn.Module, path: Path) -> nn.Module:
    state = load_file(path)
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UserError(f"{path}: not a network state_dict")
    load_strict(
        net,
        clean_state_dict(state, net),
        f"{path}: does not fit the network",
        "check --netG/--ngf/--norm or let them be inferred",
    )
    return net


def load_strict(net: nn.Module, state: dict[str, torch.Tensor], what: str, advice: str) -> None:
    """`net.load_state_dict(state, strict=True)`, or a UserError `what: ...` naming the first keys
    that are missing, unexpected or of the wrong shape."""
    expected = net.state_dict()
    problems = []
    for label, keys in (
        ("missing", [k for k in expected if k not in state]),
        ("unexpected", [k for k in state if k not in expected]),
        (
            "wrong shape",
            [
                f"{k} {tuple(state[k].shape)} (network: {tuple(v.shape)})"
                for k, v in expected.items()
                if k in state and state[k].shape != v.shape
            ],
        ),
    ):
        if keys:
            more = f" and {len(keys) - MAX_KEYS_SHOWN} more" if len(keys) > MAX_KEYS_SHOWN else ""
            problems.append(f"{len(keys)} {label} key(s): {', '.join(keys[:MAX_KEYS_SHOWN])}{more}")
    if problems:
        raise UserError(f"{what}: {'; '.join(problems)}; {advice}")
    net.load_state_dict(state, strict=True)


def generator_state(state: Any, path: Path) -> dict[str, torch.Tensor]:
    """The generator state_dict a file holds, with other implementations' key names mapped to ours.

    Takes a plain state_dict (ours, the reference's, or e.g. one whose residual blocks are
    named `block`), or a training state (`latest_state.pt`: its G_A)."""
    if (
        isinstance(state, dict)
        and isinstance(state.get("model"), dict)
        and "nets" in state["model"]
    ):
        state = state[
            "model"
        ]  # latest_state.pt: {"model": {"nets": {...}, "optimizers": ...}, "epoch": ...}
    if isinstance(state, dict) and isinstance(state.get("nets"), dict):
        if "G_A" not in state["nets"]:
            raise UserError(f"{path}: a training state without a G_A network")
        state = state["nets"]["G_A"]
    if not isinstance(state, dict):
        raise UserError(
            f"{path}: not a generator state_dict (it holds {_kind(state)}, not a mapping of names "
            f"to tensors)"
        )
    if not state:
        raise UserError(f"{path}: an empty state_dict (no weights)")
    bad = next(
        (k for k, v in state.items() if not isinstance(k, str) or not isinstance(v, torch.Tensor)),
        None,
    )
    if bad is not None:
        raise UserError(
            f"{path}: not a generator state_dict (entry {str(bad)[:80]!r} holds "
            f"{_kind(state[bad])}, not a tensor)"
        )
    return our_key_names(state)


def our_key_names(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Drop a DataParallel `module.` prefix; residual blocks named `block` become `conv_block`."""
    return {
        _BLOCK_KEY.sub(r"model.\1.conv_block.", k.removeprefix("module.")): v
        for k, v in state.items()
    }


def _kind(value: Any) -> str:
    if isinstance(value, torch.Tensor):
        return f"a tensor of shape {tuple(value.shape)}"
    return f"a {type(value).__name__}"


def infer_generator_options(
    state: dict[str, torch.Tensor], path: Path | str = "checkpoint"
) -> dict:
    """Guess netG, ngf, norm, input_nc and output_nc from a generator state_dict's keys
    (each architecture of architectures.GENERATORS recognises its own)."""
    found = recognise_generator(our_key_names(state))
    if found is not None:
        return found
    keys = ", ".join(list(state)[:MAX_KEYS_SHOWN])
    raise UserError(
        f"{path}: cannot tell the generator architecture from its keys ({keys}, ...); "
        "pass --netG, --ngf and --norm (and --input_nc/--output_nc when not 3)"
    )


def load_generator(
    path: str | Path,
    netG: str | None = None,
    ngf: int | None = None,
    norm: str | None = None,
    input_nc: int | None = None,
    output_nc: int | None = None,
    dropout: bool = False,
    device: str | torch.device = "cpu",
) -> nn.Module:
    """Build and load a generator from this project's or the reference's `*_net_G_*.pth`
    (or `latest_state.pt`, taking G_A), or another implementation's ResNet generator with affine
    instance norm or `block`-named residual blocks. Options not given are inferred from the file;
    with netG, ngf and norm given nothing needs inferring (channels default to 3)."""
    state = generator_state(load_file(Path(path)), path)
    try:
        guessed = infer_generator_options(state, path)
    except UserError:
        if None in (netG, ngf, norm):
            raise
        guessed = {"input_nc": 3, "output_nc": 3}
    given = {"netG": netG, "ngf": ngf, "norm": norm, "input_nc": input_nc, "output_nc": output_nc}
    opts = {k: (v if v is not None else guessed[k]) for k, v in given.items()}
    net = build_generator(
        opts["netG"], opts["input_nc"], opts["output_nc"], opts["ngf"], opts["norm"], dropout
    )
    load_strict(
        net,
        clean_state_dict(state, net),
        f"{path}: does not fit {opts['netG']} (ngf={opts['ngf']}, norm={opts['norm']}, "
        f"input_nc={opts['input_nc']}, output_nc={opts['output_nc']})",
        "pass the matching --netG, --ngf, --norm, --input_nc, --output_nc, or leave them out to "
        "infer them",
    )
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


def save_training_state(
    path: Path, model_state: dict, epoch: int, cfg: TrainConfig, extra: dict | None = None
) -> None:
    atomic_save(
        {
            "format": STATE_FORMAT,
            "epoch": epoch,
            "config": cfg.to_record(),
            "model": model_state,
            "rng": rng_state(),
            "extra": extra or {},
        },
        path,
    )


def load_training_state(path: Path) -> dict:
    state = load_file(path)
    if not isinstance(state, dict) or state.get("format") != STATE_FORMAT:
        raise UserError(f"{path}: not a training-state checkpoint of this version")
    return state
