"""Sample grids a person can open: per sample, real | translated | reconstructed, for both
domains."""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.nn import functional as F


@torch.no_grad()
def sample_grid(model, real_A: torch.Tensor, real_B: torch.Tensor) -> torch.Tensor:
    """Rows of [real A, fake B, rec A | real B, fake A, rec B], values in [0, 1]."""
    fake_B = model.translate(real_A, "AtoB")
    rec_A = model.translate(fake_B, "BtoA")
    fake_A = model.translate(real_B, "BtoA")
    rec_B = model.translate(fake_A, "AtoB")
    rows = []
    for i in range(real_A.shape[0]):
        rows += [real_A[i], fake_B[i], rec_A[i], real_B[i], fake_A[i], rec_B[i]]
    tiles = torch.stack([t.float().cpu().expand(3, -1, -1) for t in rows])
    return (tiles + 1) / 2


def tile(images: torch.Tensor, nrow: int, padding: int = 2, pad_value: float = 1.0) -> np.ndarray:
    """(N, 3, H, W) in [0, 1] -> one H x W x 3 uint8 image, `nrow` tiles per row, `padding` pixels
    of `pad_value` around each tile. (torchvision's make_grid would do, but importing torchvision
    costs every training process seconds: it loads torch._dynamo.)"""
    n, channels, height, width = images.shape
    rows = -(-n // nrow)
    step_y, step_x = height + padding, width + padding
    grid = torch.full((channels, rows * step_y + padding, nrow * step_x + padding), pad_value)
    for i, image in enumerate(images):
        y, x = padding + (i // nrow) * step_y, padding + (i % nrow) * step_x
        grid[:, y : y + height, x : x + width] = image
    return grid.mul(255).add_(0.5).clamp_(0, 255).to(torch.uint8).permute(1, 2, 0).numpy()


def save_sample_grid(model, real_A: torch.Tensor, real_B: torch.Tensor, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(tile(sample_grid(model, real_A, real_B), nrow=6)).save(path)
    return path


def square(images: torch.Tensor, size: int) -> torch.Tensor:
    """Resize a batch to size x size so that tiles of any shape fit one grid."""
    if images.shape[-2:] == (size, size):
        return images
    return F.interpolate(images.float(), size=(size, size), mode="bilinear", align_corners=False)


def write_index(samples_dir: Path, title: str) -> Path:
    """An index.html showing every epoch's grid, newest first (like the reference's web/ page)."""
    grids = sorted(samples_dir.glob("epoch_*.png"), reverse=True)
    items = "\n".join(
        f'<h3>{html.escape(p.stem.replace("_", " "))}</h3><img src="{html.escape(p.name)}" '
        f'style="image-rendering: pixelated; width: 720px">'
        for p in grids
    )
    page = (
        f"<!doctype html><html><head><meta "
        f"charset='utf-8'><title>{html.escape(title)}</title></head><body>"
        f"<h1>{html.escape(title)}</h1><p>Each row: real A | fake B | reconstructed A | real B | "
        f"fake A | reconstructed B</p>"
        f"{items}</body></html>"
    )
    index = samples_dir / "index.html"
    index.write_text(page)
    return index
