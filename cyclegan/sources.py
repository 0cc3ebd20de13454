"""Dataset references: turn what the user wrote (`--dataroot`) into a local folder."""

from __future__ import annotations

from pathlib import Path

from .data import DatasetError


def resolve_dataset(ref: str, cache_dir: str | None = None) -> Path:
    """Return a local folder holding trainA/ trainB/ (testA/ testB/) for `ref`."""
    if not ref:
        raise DatasetError("no dataset given: pass --dataroot with a folder holding trainA/ and trainB/")
    path = Path(ref.removeprefix("file://")).expanduser()
    if not path.is_dir():
        raise DatasetError(f"{ref}: dataset folder not found")
    return path
