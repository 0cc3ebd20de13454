"""Translate images with a trained generator, keeping file names and exact sizes.

A generator gives back its input's size only for sides that are a multiple of its `multiple` (and
at least its smallest side): an image of another size is padded (reflected) up to the next such
size, translated, and cropped back, so 741x500 comes back 741x500. Images of one size translate as
one batch (`translate_batch`); both CLIs (`python -m cyclegan translate`, the orchestrator's Ray
Data job) and the registered pyfunc model go through it.
"""

from __future__ import annotations

import contextlib
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from tqdm.auto import tqdm

from .architectures import generator_size_rule
from .data import IMG_EXTENSIONS, DatasetError, load_image
from .errors import UserError


def list_inputs(source: Path) -> list[Path]:
    if source.is_file():
        return [source]
    if not source.is_dir():
        raise UserError(f"{source}: input folder or image not found")
    files = sorted(
        p for p in source.rglob("*") if p.is_file() and p.suffix.lower() in IMG_EXTENSIONS
    )
    if not files:
        raise DatasetError(f"{source}: no images found (looked for {', '.join(IMG_EXTENSIONS)})")
    return files


def scaled_size(width: int, height: int, preprocess: str = "none", load_size: int | None = None):
    """The size an image is translated at: its own, or `load_size` wide with `scale_width`."""
    if preprocess == "scale_width" and load_size:
        return load_size, max(1, round(load_size * height / width))
    return width, height


def network_size(width: int, height: int, multiple: int) -> tuple[int, int]:
    """The reference's test-time size (`python -m cyclegan test`): each side rounded to the nearest
    multiple the generator needs (the image is resized to it)."""
    return max(multiple, round(width / multiple) * multiple), max(
        multiple, round(height / multiple) * multiple
    )


def padded_side(side: int, multiple: int, smallest: int = 1) -> int:
    """The side a generator gives back unchanged that `side` pads up to."""
    return max(-(-side // multiple) * multiple, -(-smallest // multiple) * multiple)


def size_rule(net: torch.nn.Module, multiple: int) -> tuple[int, int]:
    """(multiple, smallest) of `net` (load_generator records its architecture as `net.netG`)."""
    name = getattr(net, "netG", None)
    return generator_size_rule(name) if name else (multiple, multiple)


def to_tensor(img: Image.Image | np.ndarray) -> torch.Tensor:
    array = np.asarray(img, dtype=np.float32)
    if array.ndim == 2:
        array = array[:, :, None]
    return torch.from_numpy(array.transpose(2, 0, 1).copy()).div_(127.5).sub_(1.0)


def to_array(tensor: torch.Tensor) -> np.ndarray:
    """A (C, H, W) tensor in [-1, 1] -> an (H, W, C) uint8 array."""
    return ((tensor.float().clamp(-1, 1) + 1) * 127.5 + 0.5).byte().permute(1, 2, 0).cpu().numpy()


def to_image(tensor: torch.Tensor) -> Image.Image:
    array = to_array(tensor)
    return Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array)


def _pad(batch: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Pad (N, C, h, w) at the bottom and right up to (height, width): reflected where the image
    is large enough for it (what the network's own padding does), else repeated edges."""
    pad_h, pad_w = height - batch.shape[2], width - batch.shape[3]
    while pad_h > 0 or pad_w > 0:  # reflect pads at most side - 1 at a time
        step_h = min(pad_h, batch.shape[2] - 1)
        step_w = min(pad_w, batch.shape[3] - 1)
        if step_h <= 0 and step_w <= 0:
            return F.pad(batch, (0, pad_w, 0, pad_h), mode="replicate")
        batch = F.pad(batch, (0, max(step_w, 0), 0, max(step_h, 0)), mode="reflect")
        pad_h, pad_w = pad_h - max(step_h, 0), pad_w - max(step_w, 0)
    return batch


@torch.no_grad()
def translate_batch(
    net: torch.nn.Module, batch: torch.Tensor, multiple: int, autocast: bool = False
) -> torch.Tensor:
    """Translate (N, C, H, W) images of one size in [-1, 1] at exactly that size (on the net's
    device; bf16 autocast on CUDA when `autocast`). Returns (N, C_out, H, W) float on the CPU."""
    param = next(net.parameters())
    multiple, smallest = size_rule(net, multiple)
    height, width = batch.shape[2:]
    padded = _pad(
        batch.to(param.device),
        padded_side(height, multiple, smallest),
        padded_side(width, multiple, smallest),
    )
    if param.device.type == "cuda":
        padded = padded.contiguous(memory_format=torch.channels_last)
    context = (
        torch.autocast("cuda", dtype=torch.bfloat16)
        if autocast and param.device.type == "cuda"
        else contextlib.nullcontext()
    )
    with context:
        out = net(padded)
    return out[:, :, :height, :width].float().cpu()


def translate_image(
    net: torch.nn.Module,
    img: Image.Image,
    multiple: int,
    preprocess: str = "none",
    load_size: int | None = None,
) -> Image.Image:
    """One image at its own size (or scaled to `load_size` wide with `scale_width`)."""
    size = scaled_size(*img.size, preprocess, load_size)
    if size != img.size:
        img = img.resize(size, Image.BICUBIC)
    return to_image(translate_batch(net, to_tensor(img)[None], multiple)[0])


def translate_folder(
    net: torch.nn.Module,
    source: Path,
    output: Path,
    multiple: int = 4,
    preprocess: str = "none",
    load_size: int | None = None,
    show_progress: bool = True,
) -> list[Path]:
    """Write each translated image to `output` under its own relative path; return the files."""
    source, output = Path(source), Path(output)
    channels = next(net.parameters()).shape[1]
    written = []
    net.eval()
    for path in tqdm(
        list_inputs(source), desc="translating", unit="img", disable=not show_progress
    ):
        relative = path.name if source.is_file() else path.relative_to(source)
        target = output / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        translate_image(net, load_image(path, channels), multiple, preprocess, load_size).save(
            target
        )
        written.append(target)
    return written
