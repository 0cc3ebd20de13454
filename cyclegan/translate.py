"""Translate a folder of images with a trained generator, keeping file names and sizes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from tqdm.auto import tqdm

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


def network_size(
    width: int, height: int, multiple: int, preprocess: str = "none", load_size: int | None = None
) -> tuple[int, int]:
    """The size an image is translated at: optionally scaled to `load_size` wide, then
    rounded to the nearest multiple the generator needs."""
    if preprocess == "scale_width" and load_size:
        width, height = load_size, max(1, round(load_size * height / width))
    return max(multiple, round(width / multiple) * multiple), max(
        multiple, round(height / multiple) * multiple
    )


def to_tensor(img: Image.Image) -> torch.Tensor:
    array = np.asarray(img, dtype=np.float32)
    if array.ndim == 2:
        array = array[:, :, None]
    return torch.from_numpy(array.transpose(2, 0, 1).copy()).div_(127.5).sub_(1.0)


def to_image(tensor: torch.Tensor) -> Image.Image:
    array = ((tensor.float().clamp(-1, 1) + 1) * 127.5 + 0.5).byte().permute(1, 2, 0).cpu().numpy()
    return Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array)


@torch.no_grad()
def translate_image(
    net: torch.nn.Module,
    img: Image.Image,
    multiple: int,
    preprocess: str = "none",
    load_size: int | None = None,
) -> Image.Image:
    device = next(net.parameters()).device
    size = network_size(*img.size, multiple, preprocess, load_size)
    if size != img.size:
        img = img.resize(size, Image.BICUBIC)
    return to_image(net(to_tensor(img)[None].to(device))[0])


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
