"""Evaluation metrics: FID and KID on the standard Inception features, L1/PSNR/SSIM against ground
truth.

FID and KID use torch-fidelity's InceptionV3 (the TF "2015-12-05" graph ported to PyTorch, the
network published FID numbers are computed with) and its KID code, so that our numbers are
comparable with papers'. No package ships those weights and nothing may be downloadable, so
the weights file is found, in this order, at:

  1. an explicit path (`--inception_weights`),
  2. $CYCLEGAN_INCEPTION_WEIGHTS,
  3. torch's hub cache, where torch-fidelity itself downloads it
     (`$TORCH_HOME/hub/checkpoints/weights-inception-2015-12-05-6726825d.pth`; pytorch-fid's
     `pt_inception-2015-12-05-6726825d.pth`, the same graph with the same keys, is accepted too),
  4. a download into that cache when the machine is online (never with CYCLEGAN_OFFLINE=1),

else `MissingWeightsError` says which file to put where. Every file, the user's real one and the
tests' random one alike, goes through `find_inception_weights` and `load_inception`.

Paired metrics work on [0, 1] pixel values, averaged over images: L1 is the mean absolute error,
PSNR is 10 log10(1 / MSE) (inf for identical images), SSIM is scikit-image's with the standard
Gaussian window (sigma 1.5).

`FeatureCache` keeps the real test images' features on disk, keyed by the image files, the
test resolution and the extractor weights, so evaluating every epoch extracts them once.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from .errors import UserError
from .metric_names import INCEPTION_FILE, OFFLINE_ENV, PAIRED_METRICS, WEIGHTS_ENV
from .scores import fid

log = logging.getLogger(__name__)

INCEPTION_ALIASES = (
    "pt_inception-2015-12-05-6726825d.pth",
)  # pytorch-fid's conversion of the same graph
INCEPTION_URL = (
    "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/" + INCEPTION_FILE
)
FEATURE_LAYER = "2048"  # the pool3 features both FID and KID are defined on
CACHE_FORMAT = 1


class MissingWeightsError(UserError):
    """The InceptionV3 weights file for FID/KID cannot be found or fetched."""


# -- the Inception weights ----------------------------------------------------------------------
def inception_cache_dir() -> Path:
    """Where torch-fidelity's download puts the weights (torch.hub's checkpoint folder)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def _offline() -> bool:
    return os.environ.get(OFFLINE_ENV, "").strip().lower() not in ("", "0", "false", "no")


def _download(target: Path) -> bool:
    """Fetch the weights into `target` (atomically); False when the machine is offline."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.part")
    log.info("downloading the InceptionV3 FID weights from %s to %s", INCEPTION_URL, target)
    try:
        with urllib.request.urlopen(INCEPTION_URL, timeout=30) as response, open(tmp, "wb") as out:
            while chunk := response.read(1 << 20):
                out.write(chunk)
        os.replace(tmp, target)
        return True
    except OSError as err:  # URLError, timeouts, DNS: all OSError
        log.debug("download failed: %s", err)
        tmp.unlink(missing_ok=True)
        return False


def find_inception_weights(path: str | Path | None = None, download: bool | None = None) -> Path:
    """The InceptionV3 weights file to use (see the module docstring for the search order).

    `download` None means: download when CYCLEGAN_OFFLINE is not set and the machine is online.
    """
    if path:
        found = Path(path).expanduser()
        if not found.is_file():
            raise MissingWeightsError(
                f"--inception_weights {path}: file not found; it should be {INCEPTION_FILE} "
                f"({INCEPTION_URL})"
            )
        return found
    if os.environ.get(WEIGHTS_ENV):
        found = Path(os.environ[WEIGHTS_ENV]).expanduser()
        if not found.is_file():
            raise MissingWeightsError(
                f"${WEIGHTS_ENV}={found}: file not found; it should be {INCEPTION_FILE} "
                f"({INCEPTION_URL})"
            )
        return found
    cache = inception_cache_dir()
    for name in (INCEPTION_FILE, *INCEPTION_ALIASES):
        if (cache / name).is_file():
            return cache / name
    if (download if download is not None else not _offline()) and _download(cache / INCEPTION_FILE):
        return cache / INCEPTION_FILE
    raise MissingWeightsError(
        f"FID/KID need the InceptionV3 weights file {INCEPTION_FILE} and it could not be "
        f"downloaded. "
        f"Fetch it on a machine with internet from {INCEPTION_URL}, then put it at "
        f"{cache / INCEPTION_FILE} "
        f"(torch's hub cache, from $TORCH_HOME), or anywhere and point ${WEIGHTS_ENV} or "
        f"--inception_weights at it; "
        f"or leave fid,kid out of the metrics"
    )


class InceptionFeatures:
    """torch-fidelity's InceptionV3 on uint8 NCHW images of any size (it resizes to 299
    internally, like TF); returns the 2048-d pool features as float64 on the CPU."""

    def __init__(self, net: torch.nn.Module, weights: Path, sha256: str):
        # identity: what keys the feature cache (a prefix keeps the cache's existing files valid)
        self.net, self.weights, self.sha256, self.identity = net, weights, sha256, sha256[:16]
        self.device = next(net.parameters()).device

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        if images.dtype != torch.uint8:
            raise TypeError("InceptionFeatures expects uint8 images in [0, 255]")
        if images.shape[1] == 1:
            images = images.expand(-1, 3, -1, -1)
        (features,) = self.net(images.to(self.device))
        return features.double().cpu()

    @torch.no_grad()
    def clean(self, images: torch.Tensor) -> torch.Tensor:
        """clean-fid's features of uint8 NCHW images: `clean_resize` to the network's input in
        float (no uint8 quantisation after it), then the same network from its first layer."""
        if images.dtype != torch.uint8:
            raise TypeError("InceptionFeatures.clean expects uint8 images in [0, 255]")
        if images.shape[1] == 1:
            images = images.expand(-1, 3, -1, -1)
        x = clean_resize(images.to(self.device), INCEPTION_SIZE)
        return pool3(self.net, x.contiguous(memory_format=torch.channels_last)).double().cpu()


INCEPTION_SIZE = 299  # the network's input side
CLEAN_RESIZE = "pil-bicubic-antialias-float"  # how clean FID resizes (part of its fingerprint)


def clean_resize(images: torch.Tensor, size: int) -> torch.Tensor:
    """clean-fid's resize: each channel as a float image ('F' mode) through PIL's
    `Image.resize((size, size), BICUBIC)`, antialiased when shrinking, values kept in float
    [0, 255]. torch's antialiased bicubic is PIL's filter (Keys a = -0.5, the support widened by
    the scale when shrinking); tests/unit/test_clean_fid.py checks it against PIL itself."""
    x = images.float()
    if x.shape[-2:] == (size, size):
        return x
    return torch.nn.functional.interpolate(
        x, size=(size, size), mode="bicubic", align_corners=False, antialias=True
    )


def pool3(net: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """torch-fidelity's InceptionV3 pool3 features of float images already at 299 x 299 in
    [0, 255]: its forward pass after its own (uint8-only) resize. At 299 that resize is the
    identity, so on uint8 299-pixel images this equals `net(images)` (a test checks it)."""
    x = (x - 128) / 128
    for name in (
        "Conv2d_1a_3x3", "Conv2d_2a_3x3", "Conv2d_2b_3x3", "MaxPool_1", "Conv2d_3b_1x1",
        "Conv2d_4a_3x3", "MaxPool_2", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a", "Mixed_6b",
        "Mixed_6c", "Mixed_6d", "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c", "AvgPool",
    ):  # fmt: skip
        x = getattr(net, name)(x)
    return torch.flatten(x, 1).float()


def load_inception(
    path: str | Path | None = None, device: str | torch.device = "cpu", download: bool | None = None
) -> InceptionFeatures:
    """Find (see `find_inception_weights`) and load the FID InceptionV3."""
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    weights = find_inception_weights(path, download)
    data = weights.read_bytes()
    try:
        state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as err:
        raise UserError(
            f"{weights}: not a readable weights file ({err.__class__.__name__}); "
            f"it should be {INCEPTION_FILE} from {INCEPTION_URL}"
        ) from None
    if not isinstance(state, dict) or "Mixed_7c.branch_pool.conv.weight" not in state:
        raise UserError(
            f"{weights}: not InceptionV3 FID weights (no Mixed_7c layers); it should be "
            f"{INCEPTION_FILE} from {INCEPTION_URL}"
        )
    del state
    try:
        # torch-fidelity reads the file itself (with weights_only=False); we hand it the bytes that
        # have just loaded with weights_only=True, so only plain tensors can be in them.
        net = FeatureExtractorInceptionV3(
            "inception-v3-compat", [FEATURE_LAYER], feature_extractor_weights_path=io.BytesIO(data)
        )
    except RuntimeError as err:
        raise UserError(
            f"{weights}: does not fit InceptionV3 ({str(err).splitlines()[0]}); "
            f"it should be {INCEPTION_FILE} from {INCEPTION_URL}"
        ) from None
    sha256 = hashlib.sha256(data).hexdigest()
    # Channels-last: ~25% faster on CPU (measured here), same features to ~1e-6.
    return InceptionFeatures(net.to(device, memory_format=torch.channels_last), weights, sha256)


# -- distribution metrics -----------------------------------------------------------------------
def fid_from_features(features_1: torch.Tensor, features_2: torch.Tensor) -> float:
    """Fréchet Inception Distance between two sets of Inception features (rows = images)."""
    from torch_fidelity.metric_fid import fid_features_to_statistics, fid_statistics_to_metric

    f1, f2 = features_1.double().cpu().numpy(), features_2.double().cpu().numpy()
    if min(len(f1), len(f2)) < 2:
        raise ValueError("FID needs at least 2 images per set")
    if min(len(f1), len(f2)) <= f1.shape[1]:
        return fid(f1, f2)  # exact and faster with fewer images than dimensions
    stats = (
        fid_features_to_statistics(features_1.double().cpu()),
        fid_features_to_statistics(features_2.double().cpu()),
    )
    return float(fid_statistics_to_metric(*stats, verbose=False)["frechet_inception_distance"])


def kid_from_features(
    features_1: torch.Tensor,
    features_2: torch.Tensor,
    subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 2020,
) -> tuple[float, float]:
    """Kernel Inception Distance (mean, std over random subsets) with torch-fidelity's defaults
    (cubic polynomial kernel); the subset size shrinks to the smaller set when needed."""
    from torch_fidelity.metric_kid import kid_features_to_metric

    size = min(subset_size, len(features_1), len(features_2))
    if size < 2:
        raise ValueError("KID needs at least 2 images per set")
    out = kid_features_to_metric(
        features_1.double().cpu(),
        features_2.double().cpu(),
        kid_subsets=subsets,
        kid_subset_size=size,
        rng_seed=seed,
        verbose=False,
    )
    return out["kernel_inception_distance_mean"], out["kernel_inception_distance_std"]


# -- paired metrics (per image, on [0, 1] values) -----------------------------------------------
def to_unit(images: torch.Tensor) -> torch.Tensor:
    """uint8 [0, 255] -> float64 [0, 1] (float input is taken to be in [0, 1] already)."""
    return images.double().div(255.0) if images.dtype == torch.uint8 else images.double()


def l1_per_image(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    pred, target = to_unit(pred), to_unit(target)
    return (pred - target).abs().flatten(1).mean(1)


def psnr_per_image(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """10 log10(1 / MSE) per image (peak 1); inf where the images are identical."""
    mse = (to_unit(pred) - to_unit(target)).pow(2).flatten(1).mean(1)
    return 10 * torch.log10(1 / mse)


def ssim_per_image(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """SSIM (Wang et al. 2004) per image, channels averaged, with the paper's settings: Gaussian
    window with sigma 1.5 truncated at 3.5 sigma (narrower for images under 11 pixels), K1 0.01,
    K2 0.03, population (co)variances, the map averaged without the window's border. The same
    figures as scikit-image's `structural_similarity(..., gaussian_weights=True,
    use_sample_covariance=False)` (tests/unit/test_metrics.py compares them)."""
    x, y = to_unit(pred), to_unit(target)
    n, c, h, w = x.shape
    sigma = min(1.5, ((min(h, w) - 1) // 2) / 3.5)
    radius = int(3.5 * sigma + 0.5)
    taps = torch.exp(-0.5 * (torch.arange(-radius, radius + 1, dtype=torch.float64) / sigma) ** 2)
    taps = taps / taps.sum()

    def blur(
        z: torch.Tensor,
    ) -> torch.Tensor:  # separable, 'valid': the border the window does not cover is left out
        z = torch.nn.functional.conv2d(z.reshape(n * c, 1, *z.shape[-2:]), taps.view(1, 1, -1, 1))
        return torch.nn.functional.conv2d(z, taps.view(1, 1, 1, -1))

    mu_x, mu_y = blur(x), blur(y)
    var_x, var_y, cov = blur(x * x) - mu_x**2, blur(y * y) - mu_y**2, blur(x * y) - mu_x * mu_y
    c1, c2 = 0.01**2, 0.03**2
    ssim_map = (
        (2 * mu_x * mu_y + c1) * (2 * cov + c2) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    )
    return ssim_map.reshape(n, c, -1).mean(2).mean(1)


PAIRED_FUNCTIONS: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "l1": l1_per_image,
    "psnr": psnr_per_image,
    "ssim": ssim_per_image,
}


def paired_metrics(
    pred: torch.Tensor, target: torch.Tensor, names: Sequence[str] = PAIRED_METRICS
) -> dict[str, float]:
    """Mean over images of each paired metric; `pred` and `target` are NCHW (uint8 or [0, 1])."""
    if pred.shape != target.shape:
        raise ValueError(
            f"paired metrics need images of one shape, got {tuple(pred.shape)} and "
            f"{tuple(target.shape)}"
        )
    return {name: float(PAIRED_FUNCTIONS[name](pred, target).mean()) for name in names}


# -- the real-set feature cache -----------------------------------------------------------------
def default_feature_cache_dir() -> Path:
    """$CYCLEGAN_FEATURE_CACHE, else $CYCLEGAN_CACHE_DIR/features, else
    ~/.cache/cyclegan/features."""
    if os.environ.get("CYCLEGAN_FEATURE_CACHE"):
        return Path(os.environ["CYCLEGAN_FEATURE_CACHE"]).expanduser()
    root = os.environ.get("CYCLEGAN_CACHE_DIR") or "~/.cache/cyclegan"
    return Path(root).expanduser() / "features"


def files_fingerprint(paths: Sequence[Path]) -> list[tuple[str, int, int]]:
    """(resolved path, size, mtime) of each file: changes whenever a file does."""
    out = []
    for path in paths:
        stat = Path(path).stat()
        out.append((str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns))
    return out


class FeatureCache:
    """Features of real image sets on disk (`<root>/<key>.pt`) and in memory, with hit counters."""

    def __init__(self, root: str | Path | None = None):
        self.root = Path(root) if root else default_feature_cache_dir()
        self.memory: dict[str, torch.Tensor] = {}
        self.hits = 0
        self.misses = 0

    @staticmethod
    def key(**parts) -> str:
        text = json.dumps({"format": CACHE_FORMAT, **parts}, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:32]

    def get_or_compute(self, key: str, compute: Callable[[], torch.Tensor]) -> torch.Tensor:
        if key in self.memory:
            self.hits += 1
            return self.memory[key]
        path = self.root / f"{key}.pt"
        if path.is_file():
            try:
                features = torch.load(path, map_location="cpu", weights_only=True)["features"]
                self.hits += 1
                self.memory[key] = features
                return features
            except Exception as err:  # a truncated or foreign file: recompute and overwrite it
                log.warning(
                    "%s: unreadable cached features (%s); recomputing", path, err.__class__.__name__
                )
        self.misses += 1
        features = compute()
        self.memory[key] = features
        try:
            from .checkpoint import atomic_save

            atomic_save({"features": features}, path)
        except OSError as err:  # a read-only cache only costs speed
            log.warning(
                "cannot write the feature cache %s (%s); features will be recomputed next time",
                path,
                err,
            )
        return features
