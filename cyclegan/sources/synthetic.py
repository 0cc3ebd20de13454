"""Synthetic domain pairs with ground truth, for demos and tests.

A CycleGAN sees only the two marginal distributions, so each kind's true mapping
must be the one the distributions single out (see docs): the difference between
the domains is exactly the change we want learned, everything else (positions,
sizes, background) is drawn from the same distribution in both.

- colorshift: warm-palette scenes; domain B = channel rotation + gamma of such scenes.
- stripes:    plain shapes (A) <-> the same kind of shapes filled with dark diagonal
              stripes (B), on an unchanged background (horse <-> zebra in miniature).
- photo:      crops of real photographs (A) <-> crops of the other halves of the same photographs
              with a film look (B); the test crops come from photographs held out of training
              (photos.py).

Train A and train B come from independent scenes (photo: crops that never overlap), so the data is
truly unpaired. testA_gt/ and testB_gt/ hold the true translation of each test image, same names;
origin.json says where the images come from.

As a dataset reference, `synthetic://KIND?size=S&n_train=N&n_test=M&seed=K` is generated into the
node cache (once per parameter set).
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple
from urllib.parse import parse_qsl, urlsplit

import numpy as np
from PIL import Image

from ..errors import UserError
from . import photos
from .cache import CacheEntry, Snapshot, digest, snapshot_result
from .schemes import DatasetRef, FetchResult, bad_reference

log = logging.getLogger(__name__)

GAMMA = 1.6


def _scene(
    rng: np.random.Generator, size: int, palette: Callable[[np.random.Generator], np.ndarray]
):
    """Background colour plus 2-4 rectangles/ellipses; returns the image and the shape masks."""
    img = np.empty((size, size, 3), np.float32)
    img[:] = palette(rng)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) + 0.5
    masks = []
    for _ in range(int(rng.integers(2, 5))):
        cx, cy = rng.uniform(0.15, 0.85, 2) * size
        rx, ry = rng.uniform(0.12, 0.3, 2) * size
        if rng.random() < 0.5:
            mask = (np.abs(xx - cx) <= rx) & (np.abs(yy - cy) <= ry)
        else:
            mask = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 <= 1.0
        img[mask] = palette(rng)
        masks.append(mask)
    return img, masks


def _warm(rng: np.random.Generator) -> np.ndarray:
    return np.array(
        [rng.uniform(0.5, 1.0), rng.uniform(0.2, 0.6), rng.uniform(0.0, 0.3)], np.float32
    )


def _any_colour(rng: np.random.Generator) -> np.ndarray:
    return rng.uniform(0.25, 1.0, 3).astype(np.float32)


def colorshift_forward(img: np.ndarray) -> np.ndarray:
    """The true A -> B mapping: (R, G, B) -> (G, B, R), then gamma."""
    return np.power(img[..., [1, 2, 0]], GAMMA)


def _stripe_pattern(size: int) -> np.ndarray:
    period = max(4, size // 8)
    yy, xx = np.mgrid[0:size, 0:size]
    return ((xx + yy) // (period // 2)) % 2 == 0


class Pair(NamedTuple):
    """An image of domain A and its true translation to domain B, in [0, 1] (H, W, 3)."""

    a: np.ndarray
    b: np.ndarray
    origin: photos.Crop | None = None  # what the content was cut from (photo kind)


def _colorshift_pair(rng: np.random.Generator, size: int, part: str) -> Pair:
    scene, _ = _scene(rng, size, _warm)
    return Pair(scene, colorshift_forward(scene))


def _stripes_pair(rng: np.random.Generator, size: int, part: str) -> Pair:
    plain, masks = _scene(rng, size, _any_colour)
    striped = plain.copy()
    dark = _stripe_pattern(size)
    for mask in masks:
        striped[mask & dark] *= 0.15
    return Pair(plain, striped)


def _photo_pair(rng: np.random.Generator, size: int, part: str) -> Pair:
    crop = photos.random_crop(rng, part)
    image = crop.render(size)
    return Pair(image, photos.look(image), crop)


def _drawn_here(what: str) -> Callable[[], str]:
    return lambda: f"scenes drawn by cyclegan.sources.synthetic: {what}"


@dataclass(frozen=True)
class Kind:
    """One synthetic kind: how a pair is made, where its content comes from, its own parameter
    bounds."""

    # (rng, size, part) -> Pair; part is "trainA", "trainB" or "test": a kind may draw each from
    # other content
    make_pair: Callable[[np.random.Generator, int, str], Pair]
    source: Callable[
        [], str
    ]  # origin.json's "source"; raises a UserError when the content is not available
    bounds: dict[str, tuple[int, int]] = field(
        default_factory=dict
    )  # narrower than PARAMETERS' bounds


KINDS: dict[str, Kind] = {
    "colorshift": Kind(
        _colorshift_pair,
        _drawn_here("warm rectangles and ellipses (A), their colours rotated and gamma-mapped (B)"),
    ),
    "stripes": Kind(
        _stripes_pair,
        _drawn_here("plain shapes (A), the same kind of shapes with dark diagonal stripes (B)"),
    ),
    "photo": Kind(_photo_pair, photos.describe_source, {"size": (8, photos.MAX_SIZE)}),
}
# at a generated dataset's root: kind, parameters, source, and each photo crop's box
ORIGIN_FILE = "origin.json"


# The parameters of every kind (a synthetic:// reference's query, the `synthetic` command's flags):
# name -> (default, smallest, largest). The bounds keep a typo from filling the disk; a kind may
# narrow them (Kind.bounds).
PARAMETERS: dict[str, tuple[int, int, int]] = {
    "size": (64, 8, 1024),
    "n_train": (200, 1, 20_000),
    "n_test": (40, 0, 5_000),
    "seed": (0, 0, 2**32 - 1),
}


def parameter_problem(values: dict[str, int], kind: str) -> str | None:
    """Why these parameter values are out of bounds for `kind`, or None."""
    limits = {name: (low, high) for name, (_, low, high) in PARAMETERS.items()} | KINDS[kind].bounds
    wrong = [
        f"{name}={values[name]}"
        for name, (low, high) in limits.items()
        if name in values and not low <= values[name] <= high
    ]
    if wrong:
        accepted = ", ".join(f"{name} {low}..{high}" for name, (low, high) in limits.items())
        whose = f" for {kind}" if KINDS[kind].bounds else ""
        return (
            f"synthetic parameter(s) out of bounds: {', '.join(wrong)} (accepted{whose}: "
            f"{accepted})"
        )
    return None


def _save(array: np.ndarray, path: Path) -> None:
    Image.fromarray((np.clip(array, 0, 1) * 255 + 0.5).astype(np.uint8)).save(path)


def generate(
    kind: str, out: str | Path, n_train: int = 200, n_test: int = 40, size: int = 64, seed: int = 0
) -> Path:
    """Write trainA/ trainB/ testA/ testB/ testA_gt/ testB_gt/ under `out` and return it."""
    if kind not in KINDS:
        raise UserError(f"unknown synthetic kind {kind!r}; available: {', '.join(KINDS)}")
    parameters = {"size": size, "n_train": n_train, "n_test": n_test, "seed": seed}
    if problem := parameter_problem(parameters, kind):
        raise UserError(problem)
    make_pair = KINDS[kind].make_pair
    source = KINDS[
        kind
    ].source()  # first: a missing photo source stops here, before any folder is made
    out = Path(out)
    for name in ("trainA", "trainB", "testA", "testB", "testA_gt", "testB_gt"):
        (out / name).mkdir(parents=True, exist_ok=True)
    # Separate streams per split and domain: train A and train B scenes are independent.
    streams = np.random.SeedSequence(seed).spawn(4)
    train_a, train_b, test_a, test_b = (np.random.default_rng(s) for s in streams)
    origins: dict[str, photos.Crop | None] = {}

    def save(pair: Pair, image: np.ndarray, name: str) -> None:
        _save(image, out / name)
        origins[name] = pair.origin

    for i in range(n_train):
        a_pair, b_pair = make_pair(train_a, size, "trainA"), make_pair(train_b, size, "trainB")
        save(a_pair, a_pair.a, f"trainA/{i:05d}.png")
        save(b_pair, b_pair.b, f"trainB/{i:05d}.png")
    for i in range(n_test):
        a_pair, b_pair = make_pair(test_a, size, "test"), make_pair(test_b, size, "test")
        save(a_pair, a_pair.a, f"testA/{i:05d}.png")
        _save(a_pair.b, out / "testA_gt" / f"{i:05d}.png")
        save(b_pair, b_pair.b, f"testB/{i:05d}.png")
        _save(b_pair.a, out / "testB_gt" / f"{i:05d}.png")
    # A photo crop as "PHOTO LEFT TOP RIGHT BOTTOM" (its box in the photograph's pixels): one line
    # each.
    crops = {
        name: " ".join(map(str, (crop.photo, *crop.box))) for name, crop in origins.items() if crop
    }
    record = {"kind": kind, "parameters": parameters, "source": source} | (
        {"crops": crops} if crops else {}
    )
    (out / ORIGIN_FILE).write_text(json.dumps(record, indent=1) + "\n")
    return out


# -- the synthetic:// dataset scheme ---------------------------------------------------------------
def parse(ref: str) -> DatasetRef:
    parts = urlsplit(ref)
    kind = parts.netloc
    if kind not in KINDS:
        raise bad_reference(ref, f"unknown synthetic kind {kind!r} (available: {', '.join(KINDS)})")
    if parts.path not in ("", "/"):
        raise bad_reference(ref, "a synthetic reference has no path, only parameters after '?'")
    values = {name: default for name, (default, _, _) in PARAMETERS.items()}
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name not in PARAMETERS:
            raise bad_reference(
                ref, f"unknown synthetic parameter {name!r} (accepted: {', '.join(PARAMETERS)})"
            )
        if not re.fullmatch(r"[+-]?[0-9]{1,12}", value.strip()):
            raise bad_reference(ref, f"synthetic parameter {name}={value[:20]!r} is not an integer")
        values[name] = int(value)
    if problem := parameter_problem(values, kind):
        raise bad_reference(ref, problem)
    return DatasetRef(ref, "synthetic", kind, tuple(values.items()))


def fetch(
    parsed: DatasetRef,
    cache_dir: str | None,
    *,
    endpoint_url: str | None = None,
    show_progress: bool = False,
    require_layout: bool = True,
) -> FetchResult:
    params = dict(parsed.params)
    entry = CacheEntry(
        cache_dir,
        "synthetic",
        parsed.canonical,
        f"{parsed.location}-{params['size']}px-{params['n_train']}",
    )

    def build(tmp: Path, previous: list[Snapshot]) -> dict:
        log.info("generating %s into the cache %s", parsed.canonical, entry.dir)
        generate(
            parsed.location,
            tmp / "data",
            params["n_train"],
            params["n_test"],
            params["size"],
            params["seed"],
        )
        return {"ref": parsed.canonical, "root": "", "layout": "complete"}

    snap, built = entry.get_or_build(digest(parsed.canonical)[:16], build)
    return snapshot_result(parsed, snap, built, True)


def check(parsed: DatasetRef, *, endpoint_url: str | None = None) -> None:
    """What the kind draws from is here (photo: the photographs); a reference of a valid form then
    always generates a complete dataset."""
    KINDS[parsed.location].source()
