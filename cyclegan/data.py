"""The reference's unaligned dataset: trainA/ trainB/ testA/ testB/, random B for each A.

All randomness of a sample (which B, crop, flip) comes from a generator seeded by
(seed, epoch, index), so an epoch's data is the same whatever the number of loader
processes or DDP workers, and a resumed run sees exactly the batches it would have.
Workers hand out uint8 tensors; scaling to [-1, 1] happens on the training device.
"""

from __future__ import annotations

import io
import logging
import math
import os
import re
import stat
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from torch.utils.data import DataLoader, Dataset, Sampler

from .config import TrainConfig
from .errors import DatasetError

log = logging.getLogger(__name__)

IMG_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".tif", ".tiff", ".webp")
MAX_PIXELS_ENV = "CYCLEGAN_MAX_IMAGE_PIXELS"
DEFAULT_MAX_PIXELS = (
    89_478_485  # PIL's own default guard against decompression bombs (~9459 x 9459)
)
_SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def max_image_pixels() -> int:
    value = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not value:
        return DEFAULT_MAX_PIXELS
    if not value.isdigit() or int(value) < 1:
        raise DatasetError(
            f"${MAX_PIXELS_ENV}={value!r}: give the largest number of pixels an image may have, "
            f"e.g. 200000000"
        )
    return int(value)


def open_image(path: Path) -> Image.Image:
    """Image.open for dataset files: a regular file (a FIFO would block forever, a device never
    end), of at most max_image_pixels() pixels. OSError when it is not a readable image file;
    DatasetError, naming the limit, when it is too large."""
    mode = os.stat(path).st_mode
    if not stat.S_ISREG(mode):
        kind = (
            "FIFO"
            if stat.S_ISFIFO(mode)
            else "folder"
            if stat.S_ISDIR(mode)
            else "device or socket"
        )
        raise OSError(f"not a regular file (a {kind}); not opened")
    return _open_limited(path, path)


def _open_limited(source, name) -> Image.Image:
    """Image.open of `source` (a path or a file object), refused with a DatasetError naming
    `name` above max_image_pixels()."""
    limit = max_image_pixels()
    Image.MAX_IMAGE_PIXELS = (
        limit  # PIL warns above it and refuses twice as many; the check below says why
    )
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(source)
    except (
        Image.DecompressionBombError
    ) as err:  # "Image size (900000000 pixels) exceeds limit of ..."
        img, size = (
            None,
            next(iter(re.findall(r"\d+ pixels", str(err))), f"more than {2 * limit} pixels"),
        )
    if img is not None and img.size[0] * img.size[1] > limit:
        size = f"{img.size[0]}x{img.size[1]} pixels"
        img.close()
        img = None
    if img is None:
        raise DatasetError(
            f"{name}: image of {size}, more than the limit of {limit} pixels (a guard against "
            f"decompression "
            f"bombs); raise it with ${MAX_PIXELS_ENV}, or resize the image"
        )
    return img


def to_8bit(img: Image.Image) -> Image.Image:
    """16-bit grayscale (mode I;16 or I) scaled to 8 bits: PIL's convert() would clip it to
    white."""
    if img.mode not in _SIXTEEN_BIT_MODES:
        return img
    array = np.asarray(img, dtype=np.float64)
    return Image.fromarray(np.clip(array / 257.0 + 0.5, 0, 255).astype(np.uint8), "L")


@dataclass
class ImageScan:
    paths: list[Path]
    sizes: list[tuple[int, int]]
    skipped: list[tuple[Path, str]]


def scan_images(folder: Path, strict: bool = False) -> ImageScan:
    """Every readable image under `folder` (recursively, sorted), checking headers only.

    Unreadable files are skipped with a warning, or fatal when `strict`.
    """
    if not folder.is_dir():
        raise DatasetError(
            f"{folder}: folder not found; a dataset needs trainA/ and trainB/ (and testA/ testB/ "
            f"for evaluation)"
        )
    paths, sizes, skipped = [], [], []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for name in sorted(files):
            if name.startswith("."):
                continue
            path = Path(root) / name
            try:
                with open_image(path) as img:
                    sizes.append(img.size)
                paths.append(path)
            except (UnidentifiedImageError, OSError) as err:
                if strict:
                    raise DatasetError(
                        f"{path}: not a readable image ({err.__class__.__name__}); remove it or "
                        f"drop --strict_data to skip it"
                    ) from None
                skipped.append((path, str(err)))
    if skipped:
        log.warning(
            "%s: skipped %d file(s) that are not readable images, e.g. %s",
            folder,
            len(skipped),
            skipped[0][0].name,
        )
    if not paths:
        raise DatasetError(f"{folder}: no images found (looked for {', '.join(IMG_EXTENSIONS)})")
    return ImageScan(paths, sizes, skipped)


def load_image(path: Path, channels: int) -> Image.Image:
    try:
        with open_image(path) as img:
            return to_8bit(img).convert("RGB" if channels == 3 else "L")
    except (UnidentifiedImageError, OSError) as err:
        hint = (
            "; the scan before training reads only headers: remove the file or replace it"
            if "truncated" in str(err)
            else ""
        )
        raise DatasetError(f"{path}: cannot read image ({err}){hint}") from None


def decode_image(data: bytes, name: str, channels: int) -> Image.Image:
    """An encoded image file's bytes as training loads it (16-bit scaled to 8, then RGB or
    greyscale); DatasetError naming `name` when it is not a readable image or too large."""
    try:
        with _open_limited(io.BytesIO(data), name) as img:
            return to_8bit(img).convert("RGB" if channels == 3 else "L")
    except UnidentifiedImageError:
        raise DatasetError(f"{name}: not a readable image file") from None
    except OSError as err:  # e.g. truncated
        raise DatasetError(f"{name}: cannot read image ({err})") from None


def _round_to(value: float, base: int) -> int:
    return max(base, int(round(value / base) * base))


def _scaled_width_size(w: int, h: int, target: int, crop: int) -> tuple[int, int]:
    if w == target and h >= crop:
        return w, h
    return target, int(max(target * h / w, crop))


def output_size(size: tuple[int, int], cfg: TrainConfig, train: bool) -> tuple[int, int]:
    """(w, h) an image of `size` has after preprocessing (before any random crop)."""
    w, h = size
    if not train:  # evaluation: the model's test resolution, no randomness
        if cfg.preprocess in ("resize_and_crop", "crop"):
            return cfg.crop_size, cfg.crop_size
        if cfg.preprocess.startswith("scale_width"):
            return _scaled_width_size(w, h, cfg.crop_size, 0)
        return _round_to(w, 4), _round_to(h, 4)
    if cfg.preprocess == "resize_and_crop":
        return cfg.load_size, cfg.load_size
    if cfg.preprocess.startswith("scale_width"):
        return _scaled_width_size(w, h, cfg.load_size, cfg.crop_size)
    if cfg.preprocess == "none":
        return _round_to(w, 4), _round_to(h, 4)
    return w, h


def check_crop(scan: ImageScan, cfg: TrainConfig) -> None:
    """Fail early, naming the file, when an image is too small for the crop."""
    if "crop" not in cfg.preprocess:
        return
    for path, size in zip(scan.paths, scan.sizes):
        w, h = output_size(size, cfg, train=True)
        if min(w, h) < cfg.crop_size:
            raise DatasetError(
                f"{path}: image is {size[0]}x{size[1]}, smaller than --crop_size {cfg.crop_size} "
                f"after --preprocess {cfg.preprocess}; use a smaller crop or --preprocess "
                f"resize_and_crop"
            )


def transform(img: Image.Image, cfg: TrainConfig, rng: np.random.Generator | None) -> torch.Tensor:
    """Preprocess one image into a uint8 CHW tensor. `rng` None means evaluation (no randomness)."""
    train = rng is not None
    target = output_size(img.size, cfg, train)
    if target != img.size:
        img = img.resize(target, Image.BICUBIC)
    if train and "crop" in cfg.preprocess:
        w, h = img.size
        x = int(rng.integers(0, w - cfg.crop_size + 1))
        y = int(rng.integers(0, h - cfg.crop_size + 1))
        img = img.crop((x, y, x + cfg.crop_size, y + cfg.crop_size))
    flip = train and not cfg.no_flip and rng.random() < 0.5
    array = np.asarray(img, dtype=np.uint8)
    if array.ndim == 2:
        array = array[:, :, None]
    if flip:
        array = array[:, ::-1]
    return torch.from_numpy(np.ascontiguousarray(array.transpose(2, 0, 1)))


def to_model_input(
    batch: torch.Tensor, device: torch.device, memory_format=torch.contiguous_format
) -> torch.Tensor:
    """uint8 [0, 255] -> float [-1, 1] on `device`, converted there (less to copy)."""
    batch = batch.to(device, non_blocking=True).to(memory_format=memory_format)
    return batch.float().div_(127.5).sub_(1.0)


def domains(cfg: TrainConfig) -> tuple[str, str]:
    """The dataset's domains the model calls A and B: swapped with --direction BtoA."""
    return ("A", "B") if cfg.direction == "AtoB" else ("B", "A")


class UnalignedDataset(Dataset):
    """Items are (epoch, index) pairs from EpochShardSampler; returns {'A', 'B', 'A_path',
    'B_path'}.

    Length is max(|A|, |B|) as in the reference; B is drawn at random unless serial_batches.
    """

    def __init__(
        self, root: Path, cfg: TrainConfig, phase: str = "train", augment: bool | None = None
    ):
        self.cfg = cfg
        self.train = phase == "train" if augment is None else augment  # random B, crop and flip
        root = Path(root)
        if not root.is_dir():
            raise DatasetError(f"{root}: dataset folder not found")
        first, second = domains(cfg)
        scans = {}
        for domain in (first, second):
            scans[domain] = scan_images(root / f"{phase}{domain}", strict=cfg.strict_data)
        self.skipped = [item for scan in scans.values() for item in scan.skipped]
        if self.train:
            for scan in scans.values():
                check_crop(scan, cfg)
        limit = cfg.max_dataset_size or None
        self.A_paths = scans[first].paths[:limit]
        self.B_paths = scans[second].paths[:limit]
        # With BtoA the networks still see "A" as their input domain, so channels swap too.
        self.A_nc, self.B_nc = (
            (cfg.input_nc, cfg.output_nc)
            if cfg.direction == "AtoB"
            else (cfg.output_nc, cfg.input_nc)
        )

    def __len__(self) -> int:
        return max(len(self.A_paths), len(self.B_paths))

    def __getitem__(self, item) -> dict:
        epoch, index = item if isinstance(item, tuple) else (0, item)
        rng = np.random.default_rng([self.cfg.seed, epoch, index]) if self.train else None
        a_path = self.A_paths[index % len(self.A_paths)]
        if self.cfg.serial_batches or not self.train:
            b_path = self.B_paths[index % len(self.B_paths)]
        else:
            b_path = self.B_paths[int(rng.integers(len(self.B_paths)))]
        return {
            "A": transform(load_image(a_path, self.A_nc), self.cfg, rng),
            "B": transform(load_image(b_path, self.B_nc), self.cfg, rng),
            "A_path": str(a_path),
            "B_path": str(b_path),
        }


class EpochShardSampler(Sampler):
    """Yields (epoch, index): a seeded permutation per epoch, split into disjoint
    shards for DDP (rank r of w takes every w-th index, padded by wrapping)."""

    def __init__(
        self, size: int, rank: int = 0, world_size: int = 1, shuffle: bool = True, seed: int = 0
    ):
        self.size, self.rank, self.world_size, self.shuffle, self.seed = (
            size,
            rank,
            world_size,
            shuffle,
            seed,
        )
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return math.ceil(self.size / self.world_size)

    def indices(self) -> list[int]:
        if self.shuffle:
            order = torch.randperm(
                self.size, generator=torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            ).tolist()
        else:
            order = list(range(self.size))
        total = len(self) * self.world_size
        order += order[: total - len(order)]
        return order[self.rank : total : self.world_size]

    def __iter__(self):
        return iter([(self.epoch, i) for i in self.indices()])


def make_loader(
    dataset: UnalignedDataset,
    cfg: TrainConfig,
    rank: int = 0,
    world_size: int = 1,
    pin_memory: bool = False,
    cpu_step: bool = False,
) -> DataLoader:
    """The training loader; `cpu_step`: the training step runs on the CPU (its threads then keep
    their cores: see cyclegan.threads.loader_workers)."""
    from .threads import loader_workers

    sampler = EpochShardSampler(
        len(dataset), rank, world_size, shuffle=not cfg.serial_batches, seed=cfg.seed
    )
    workers = loader_workers(
        cfg.num_threads, step_threads=torch.get_num_threads() if cpu_step else 1
    )
    return DataLoader(
        dataset,
        batch_size=cfg.batch_size,
        sampler=sampler,
        num_workers=workers,
        pin_memory=pin_memory,
        persistent_workers=workers > 0,
        drop_last=False,
        prefetch_factor=4 if workers > 0 else None,
    )
