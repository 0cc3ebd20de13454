"""Real photographs for the `photo` synthetic kind, and the film look that tells its two domains
apart.

The photographs are the colour ones that ship inside scikit-image's wheel (skimage/data/: public
domain or CC0). They are read with PIL from the installed package's folder: skimage itself is not
imported (it is slow to import and would fetch the photographs it does not ship over the network).

Domain A and domain B crop opposite halves of the same training photographs: their crops never
overlap (the data is truly unpaired), yet both domains hold the same kind of content, so that the
look is the only thing that tells them apart (DESIGN.md §4; with different photographs per domain,
the content would differ too, and a small CycleGAN learns to paint one domain's subjects onto the
other's instead). The test crops come from photographs that training never sees.

The look is a film grade, one strictly increasing curve per channel (a tone curve, a warm cast in
the midtones, teal shadows and cream highlights): B = look(photo). Per-channel monotone curves are
what a distribution can single out (DESIGN.md §4): B's colours are shifted one way, not
symmetrically re-drawn. Every curve stays inside [0, 1] without clipping, so it has an exact
inverse.
"""

from __future__ import annotations

import hashlib
import importlib.util
import io
from dataclasses import dataclass
from functools import lru_cache
from importlib import metadata
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import DatasetError

DISTRIBUTION = (
    "scikit-image"  # the package whose wheel holds the photographs (import name: skimage)
)
# The photographs training crops, and those held out for the test crops. motorcycle_left/_right are
# a stereo pair (one scene): they stay on the same side.
TRAIN_PHOTOS = (
    "astronaut.png",
    "chelsea.png",
    "coffee.png",
    "rocket.jpg",
    "hubble_deep_field.jpg",
    "retina.jpg",
)
TEST_PHOTOS = ("motorcycle_left.png", "motorcycle_right.png", "ihc.png")
# Each file's SHA-256 (as scikit-image's own data registry has it): the same seed gives the same
# dataset on every machine, or a clear error, never a silently different one.
SHA256 = {
    "astronaut.png": "88431cd9653ccd539741b555fb0a46b61558b301d4110412b5bc28b5e3ea6cb5",
    "coffee.png": "cc02f8ca188b167c775a7101b5d767d1e71792cf762c33d6fa15a4599b5a8de7",
    "hubble_deep_field.jpg": "3a19c5dd8a927a9334bb1229a6d63711b1c0c767fb27e2286e7c84a3e2c2f5f4",
    "chelsea.png": "596aa1e7cb875eb79f437e310381d26b338a81c2da23439704a73c4651e8c4bb",
    "rocket.jpg": "c2dd0de7c538df8d111e479619b129464d0269d0ae5fd18ca91d33a7fdfea95c",
    "retina.jpg": "38a07f36f27f095e818aea7b96d34202c05176d30253c66733f2e00379e9e0e6",
    "motorcycle_left.png": "db18e9c4157617403c3537a6ba355dfeafe9a7eabb6b9b94cb33f6525dd49179",
    "motorcycle_right.png": "5fc913ae870e42a4b662314bc904d1786bcad8e2f0b9b67dba5a229406357797",
    "ihc.png": "f8dd1aa387ddd1f49d8ad13b50921b237df8e9b262606d258770687b0ef93cef",
}
CROP_SIDE = (0.4, 0.9)  # a crop's side, as a fraction of the shorter side of half its photograph
# the smallest crop (0.4 x 225 px, half of chelsea) would be upsampled under 3x at this size
MAX_SIZE = 256

# The look, per channel (R, G, B): x -> x + BEND*sin(pi x)/pi (midtones warmer: red up, blue down),
# then the S tone curve s(x) = x - TONE*sin(2 pi x)/(2 pi), then black -> LIFT, white -> GAIN
# (teal shadows, cream highlights). Each step has a positive slope, so the whole curve does.
BEND = np.array([0.7, 0.2, -0.6], np.float32)
TONE = 0.4
LIFT = np.array([0.02, 0.10, 0.25], np.float32)
GAIN = np.array([1.00, 0.95, 0.78], np.float32)


def look(x: np.ndarray) -> np.ndarray:
    """The film look on an RGB image in [0, 1] (H, W, 3); values stay in [LIFT, GAIN]."""
    bent = x + BEND * np.sin(np.pi * x) / np.pi
    toned = bent - TONE * np.sin(2 * np.pi * bent) / (2 * np.pi)
    return (LIFT + (GAIN - LIFT) * toned).astype(np.float32)


@lru_cache(maxsize=1)
def _curve_table() -> tuple[np.ndarray, np.ndarray]:
    grid = np.linspace(0.0, 1.0, 4097, dtype=np.float32)
    return grid, look(np.repeat(grid[:, None], 3, axis=1))


def inverse_look(y: np.ndarray) -> np.ndarray:
    """The look undone, channel by channel (values outside a channel's [LIFT, GAIN] clamp to it)."""
    grid, curves = _curve_table()
    return np.stack([np.interp(y[..., c], curves[:, c], grid) for c in range(3)], axis=-1).astype(
        np.float32
    )


def photo_folder() -> Path:
    """Where the installed scikit-image keeps its photographs; a DatasetError saying what to install
    if absent."""
    spec = importlib.util.find_spec("skimage")  # finds the package without importing it
    folder = Path(next(iter(spec.submodule_search_locations or ()), "")) / "data" if spec else None
    missing = [name for name in SHA256 if not (folder and (folder / name).is_file())]
    if missing:
        where = f"not in {folder}" if folder else "scikit-image is not installed"
        raise DatasetError(
            f"synthetic://photo crops the sample photographs that ship inside the {DISTRIBUTION} "
            f"wheel "
            f"({where}: {', '.join(missing)}); install it into this Python (pip install "
            f"'{DISTRIBUTION}>=0.21', "
            "or reinstall this project: it is one of its dependencies) on every node that "
            "generates the data"
        )
    return folder


def describe_source() -> str:
    """One line on where the photographs come from, for a dataset's origin record."""
    try:
        version = metadata.version(DISTRIBUTION)
    except metadata.PackageNotFoundError:
        version = "?"
    return (
        f"crops of the sample photographs of {DISTRIBUTION} {version} ({photo_folder()}; public "
        f"domain or CC0): "
        f"trainA and trainB from opposite halves of {', '.join(TRAIN_PHOTOS)}; testA and testB "
        f"from {', '.join(TEST_PHOTOS)}"
    )


@lru_cache(maxsize=16)  # the nine photographs, checked and decoded once per process
def _photo(folder: Path, name: str) -> Image.Image:
    data = (folder / name).read_bytes()
    if hashlib.sha256(data).hexdigest() != SHA256[name]:
        raise DatasetError(
            f"{folder / name}: not the photograph synthetic://photo is built on (its SHA-256 "
            f"differs); "
            f"reinstall {DISTRIBUTION} (pip install --force-reinstall '{DISTRIBUTION}>=0.21')"
        )
    with Image.open(io.BytesIO(data)) as img:
        return img.convert("RGB")


@dataclass(frozen=True)
class Crop:
    """Where a crop came from: the photograph's file name and the box (left, top, right, bottom) in
    its pixels."""

    photo: str
    box: tuple[float, float, float, float]

    def render(self, size: int) -> np.ndarray:
        """The crop resized to size x size, RGB in [0, 1] (exactly representable in 8 bits)."""
        img = _photo(photo_folder(), self.photo).resize(
            (size, size), Image.Resampling.BICUBIC, box=self.box, reducing_gap=None
        )
        return np.asarray(img, np.float32) / 255


def region(name: str, part: str) -> tuple[float, float, float, float]:
    """The box (left, top, right, bottom) of photograph `name` that `part` ("trainA", "trainB" or
    "test") crops: a test photograph whole; a training photograph cut across its longer side into
    two halves, one for each domain, domain A taking the first half of every other photograph (so
    that neither domain gets all the skies or all the floors)."""
    width, height = _photo(photo_folder(), name).size
    if part == "test":
        return (0, 0, width, height)
    first = (part == "trainA") == (TRAIN_PHOTOS.index(name) % 2 == 0)
    if width >= height:
        return (0, 0, width / 2, height) if first else (width / 2, 0, width, height)
    return (0, 0, width, height / 2) if first else (0, height / 2, width, height)


def random_crop(rng: np.random.Generator, part: str) -> Crop:
    """A random square crop for `part` ("trainA", "trainB" or "test"): inside the region of one of
    its photographs. The two domains' crops never overlap, and test crops come from photographs
    training never sees.
    """
    names = TEST_PHOTOS if part == "test" else TRAIN_PHOTOS
    name = names[int(rng.integers(len(names)))]
    width, height = _photo(photo_folder(), name).size
    side = rng.uniform(*CROP_SIDE) * min(max(width, height) / 2, min(width, height))
    x0, y0, x1, y1 = region(name, part)
    left, top = rng.uniform(x0, x1 - side), rng.uniform(y0, y1 - side)
    return Crop(name, (float(left), float(top), float(left + side), float(top + side)))
