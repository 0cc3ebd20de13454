"""Sample grids a person can open: per sample, real | translated | reconstructed, for both domains."""

from __future__ import annotations

import html
from pathlib import Path

import torch
from torch.nn import functional as F
from torchvision.utils import save_image


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


def save_sample_grid(model, real_A: torch.Tensor, real_B: torch.Tensor, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    save_image(sample_grid(model, real_A, real_B), path, nrow=6, padding=2, pad_value=1.0)
    return path


def square(images: torch.Tensor, size: int) -> torch.Tensor:
    """Resize a batch to size x size so that tiles of any shape fit one grid."""
    if images.shape[-2:] == (size, size):
        return images
    return F.interpolate(images.float(), size=(size, size), mode="bilinear", align_corners=False)


def write_index(samples_dir: Path, title: str) -> Path:
    """An index.html showing every epoch's grid, newest first (like the reference's web/ page)."""
    grids = sorted(samples_dir.glob("epoch_*.png"), reverse=True)
    items = "\n".join(f'<h3>{html.escape(p.stem.replace("_", " "))}</h3><img src="{html.escape(p.name)}" style="image-rendering: pixelated; width: 720px">'
                      for p in grids)
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title></head><body>"
            f"<h1>{html.escape(title)}</h1><p>Each row: real A | fake B | reconstructed A | real B | fake A | reconstructed B</p>"
            f"{items}</body></html>")
    index = samples_dir / "index.html"
    index.write_text(page)
    return index
