"""The per-image evidence behind an evaluation, and what it says with its uncertainty.

An evaluation of a test split keeps, besides its averages, what they were computed from: each
paired metric's value per test image and direction, and the Inception features of the translated
and the real images (FID, KID). From these, `Scores` gives

- a 95 % bootstrap interval of every metric, per direction and pooled (`intervals`): paired
  metrics resample the test images (their mean, 1,000 times: vectorised, milliseconds); FID and
  KID resample the translated and the real sets and recompute the distance from the features
  computed once (200 times: an SVD or a kernel sum each);
- the improvement of one model over another evaluated on the same test images with the same
  protocol, with its interval, from a *paired* bootstrap: both are resampled with the same
  indices, so the images' own difficulty cancels out (`compare`).

Intervals are bias-corrected percentile intervals: the bootstrap distribution is shifted by the
difference between its mean and the estimate. For a mean that is the plain percentile interval;
FID and KID, computed on a resample with repeated images, come out higher than on the set itself,
and the shift takes that bias out.

`protocol` is the fingerprint of how the images were scored (orchestrator compares numbers only
under one fingerprint). Saved as `.npz` (numpy only, read with allow_pickle=False), so the Ray
driver reads it without torch.
"""

from __future__ import annotations

import logging
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

from .metric_names import DIRECTIONS, DISTRIBUTION_METRICS, PER_IMAGE_METRICS, base_metric, mode

log = logging.getLogger(__name__)

LEVEL = 0.95
RESAMPLES = 1000  # paired metrics: a mean per resample
DISTRIBUTION_RESAMPLES = 200  # FID, KID: an SVD or a kernel sum per resample
SEED = 2026
CI_LOW, CI_HIGH = "_ci_low", "_ci_high"


def ci_keys(metric: str) -> tuple[str, str]:
    """`psnr` -> (`psnr_ci_low`, `psnr_ci_high`); `fid_AtoB` -> (`fid_AtoB_ci_low`, ...)."""
    return metric + CI_LOW, metric + CI_HIGH


def feature_key(metric: str, kind: str, direction: str) -> str:
    """Where `features` keeps a distribution metric's image features: `fake_AtoB` / `real_AtoB`
    for fid and kid, `clean_fake_AtoB` ... for fid_clean and kid_clean (another resize)."""
    prefix = "clean_" if base_metric(metric).endswith("_clean") else ""
    return f"{prefix}{kind}_{direction}"


# -- the distances, in numpy ---------------------------------------------------------------------
def fid(fakes: np.ndarray, reals: np.ndarray) -> float:
    """FID = |mu1 - mu2|^2 + tr S1 + tr S2 - 2 tr sqrt(S1 S2), with S = Xc^T Xc / (n - 1).

    tr sqrt(S1 S2) is the sum of the singular values of X1c X2c^T / sqrt((n1-1)(n2-1)) (the
    non-zero eigenvalues of S1 S2 are the squared singular values of that n1 x n2 matrix): exact,
    and much faster than a 2048x2048 eigenproblem for test sets of a few hundred images.
    """
    x1, x2 = fakes - fakes.mean(0), reals - reals.mean(0)
    a1, a2 = x1 / np.sqrt(len(fakes) - 1), x2 / np.sqrt(len(reals) - 1)
    diff = fakes.mean(0) - reals.mean(0)
    tr_covmean = np.linalg.svd(a1 @ a2.T, compute_uv=False).sum()
    return max(float(diff @ diff + (a1 * a1).sum() + (a2 * a2).sum() - 2 * tr_covmean), 0.0)


def _fid_from_grams(xx: np.ndarray, yy: np.ndarray, xy: np.ndarray) -> float:
    """`fid` from the sets' Gram matrices (X X^T, Y Y^T, X Y^T): centring is a double-centring of
    each, |mu1 - mu2|^2 and the traces are sums of their entries."""
    n, m = len(xx), len(yy)
    mean_gap = xx.mean() + yy.mean() - 2 * xy.mean()
    trace_x = (np.trace(xx) - xx.sum() / n) / (n - 1)
    trace_y = (np.trace(yy) - yy.sum() / m) / (m - 1)
    centred = xy - xy.mean(0) - xy.mean(1)[:, None] + xy.mean()
    # The sum of the singular values: square roots of the eigenvalues of C C^T (symmetric: several
    # times faster than an SVD).
    product = centred @ centred.T if n <= m else centred.T @ centred
    cross = np.sqrt(np.clip(np.linalg.eigvalsh(product), 0, None)).sum() / np.sqrt(
        (n - 1) * (m - 1)
    )
    return max(float(mean_gap + trace_x + trace_y - 2 * cross), 0.0)


def _mmd2(kxx: np.ndarray, kyy: np.ndarray, kxy: np.ndarray) -> float:
    """The unbiased squared MMD from the three kernel matrices (KID's estimator)."""
    m, n = len(kxx), len(kyy)
    xx = (kxx.sum() - np.trace(kxx)) / (m * (m - 1))
    yy = (kyy.sum() - np.trace(kyy)) / (n * (n - 1))
    return float(xx + yy - 2 * kxy.mean())


# -- intervals ------------------------------------------------------------------------------------
def interval(estimate: float, resampled: np.ndarray, level: float = LEVEL) -> tuple[float, float]:
    """The bias-corrected percentile interval of `estimate` from its bootstrap values (NaN, NaN
    when they are not all finite: e.g. PSNR of an image identical to its truth is infinite)."""
    if not np.isfinite(estimate) or not np.all(np.isfinite(resampled)):
        return float("nan"), float("nan")
    shifted = resampled - (resampled.mean() - estimate)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(shifted, [tail, 100 - tail])
    return float(low), float(high)


def mean_interval(
    values: np.ndarray, resamples: int = RESAMPLES, seed: int = SEED
) -> tuple[float, float]:
    """The 95 % interval of the mean of `values` (one per test image)."""
    values = np.asarray(values, dtype=np.float64)
    idx = np.random.default_rng(seed).integers(0, len(values), (resamples, len(values)))
    return interval(float(values.mean()), values[idx].mean(1))


@dataclass(frozen=True)
class Difference:
    """How much better one model is than another (positive: better, in the metric's units),
    with its 95 % interval."""

    estimate: float
    low: float
    high: float

    @property
    def significant(self) -> bool:
        """The interval excludes zero, on the better side."""
        return self.low > 0

    def describe(self, unit: str = "") -> str:
        return f"{self.estimate:+.3g}{unit} [{self.low:+.3g}, {self.high:+.3g}]"


@dataclass
class Scores:
    """The evidence of one evaluation (see the module docstring).

    paired: `<metric>_<direction>` -> one value per test input image, in `inputs`' order;
    features: `fake_<direction>` / `real_<direction>` -> Inception features, one row per image
        (`clean_fake_<direction>` ... for the clean metrics: `feature_key`);
    inputs: `<direction>` -> the test inputs' file names (what makes two evaluations paired).
    """

    protocol: str
    paired: dict[str, np.ndarray] = field(default_factory=dict)
    features: dict[str, np.ndarray] = field(default_factory=dict)
    inputs: dict[str, list[str]] = field(default_factory=dict)
    _resamples: dict[str, np.ndarray] = field(default_factory=dict, repr=False, compare=False)
    _gram_cache: dict[str, tuple] = field(default_factory=dict, repr=False, compare=False)

    # -- the metrics -------------------------------------------------------------------------------
    def metric_names(self) -> list[str]:
        """The metrics these scores can give (pooled names: `psnr`, `fid`)."""
        names = [m for m in PER_IMAGE_METRICS if any(f"{m}_{d}" in self.paired for d in DIRECTIONS)]
        return names + [
            m
            for m in DISTRIBUTION_METRICS
            if any(feature_key(m, "fake", d) in self.features for d in DIRECTIONS)
        ]

    def _directions(self, metric: str) -> list[str]:
        """The directions that have `metric` (`psnr` both; `psnr_AtoB` one)."""
        base = base_metric(metric)
        asked = [d for d in DIRECTIONS if metric == f"{base}_{d}"] or list(DIRECTIONS)
        if base in PER_IMAGE_METRICS:
            return [d for d in asked if f"{base}_{d}" in self.paired]
        return [d for d in asked if feature_key(base, "fake", d) in self.features]

    def _indices(self, metric: str, direction: str) -> tuple[np.ndarray, np.ndarray | None]:
        """Resampled rows (of the inputs, and of the reals for FID/KID), the same for the same
        metric and direction whatever the model: what makes a comparison paired."""
        base = base_metric(metric)
        rng = np.random.default_rng([SEED, zlib.crc32(f"{base}/{direction}".encode())])
        if base in PER_IMAGE_METRICS:
            n = len(self.paired[f"{base}_{direction}"])
            return rng.integers(0, n, (RESAMPLES, n)), None
        n_fake, n_real = (
            len(self.features[feature_key(base, "fake", direction)]),
            len(self.features[feature_key(base, "real", direction)]),
        )
        shape = DISTRIBUTION_RESAMPLES
        return rng.integers(0, n_fake, (shape, n_fake)), rng.integers(0, n_real, (shape, n_real))

    def _grams(self, base: str, direction: str) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
        """The Gram matrices X X^T, Y Y^T, X Y^T of the translated (X) and real (Y) features, and
        the dimension: every resample's FID and KID are then index operations on n x n matrices,
        not products of 2048-wide ones."""
        fake, real = feature_key(base, "fake", direction), feature_key(base, "real", direction)
        if fake not in self._gram_cache:
            x = self.features[fake].astype(np.float64)
            y = self.features[real].astype(np.float64)
            self._gram_cache[fake] = (x @ x.T, y @ y.T, x @ y.T, x.shape[1])
        return self._gram_cache[fake]

    def _value(self, base: str, direction: str, rows=None, real_rows=None) -> float:
        """`base` in `direction` on the whole test set, or on the given resampled rows."""
        if base in PER_IMAGE_METRICS:
            values = self.paired[f"{base}_{direction}"]
            return float(values.mean() if rows is None else values[rows].mean())
        gxx, gyy, gxy, dim = self._grams(base, direction)
        if rows is None:
            rows, real_rows = np.arange(len(gxx)), np.arange(len(gyy))
        xx, yy, xy = (
            gxx[np.ix_(rows, rows)],
            gyy[np.ix_(real_rows, real_rows)],
            gxy[np.ix_(rows, real_rows)],
        )
        if base.startswith("kid"):
            return _mmd2((xx / dim + 1) ** 3, (yy / dim + 1) ** 3, (xy / dim + 1) ** 3)
        return _fid_from_grams(xx, yy, xy)

    def _direction_resampled(self, base: str, direction: str) -> np.ndarray:
        """The bootstrap values of `base` in `direction` (kept: pooled intervals reuse them)."""
        key = f"{base}_{direction}"
        if key not in self._resamples:
            rows, real_rows = self._indices(base, direction)
            if base in PER_IMAGE_METRICS:
                self._resamples[key] = self.paired[key][rows].mean(1)
            else:
                self._resamples[key] = np.array(
                    [self._value(base, direction, r, q) for r, q in zip(rows, real_rows)]
                )
        return self._resamples[key]

    def _resampled(self, metric: str) -> tuple[float, np.ndarray]:
        """`metric` (pooled: the mean of its directions) and its bootstrap values."""
        base, estimate = base_metric(metric), self.value(metric)
        resampled = [self._direction_resampled(base, d) for d in self._directions(metric)]
        return estimate, np.mean(resampled, axis=0)

    @threadpool_limits.wrap(limits=1, user_api="blas")
    def intervals(self, metrics: list[str] | None = None) -> dict[str, float]:
        """`<key>_ci_low` / `<key>_ci_high` of every metric, per direction and pooled. (The
        bootstrap's matrices are small: one BLAS thread is faster than several fighting the
        training's threads for the cores, 6x on a busy 2-core machine.)"""
        out: dict[str, float] = {}
        for base in metrics or self.metric_names():
            for key in (base, *(f"{base}_{d}" for d in self._directions(base))):
                if not self._directions(key):
                    continue
                low, high = interval(*self._resampled(key))
                out.update(dict(zip(ci_keys(key), (low, high))))
        return out

    @threadpool_limits.wrap(limits=1, user_api="blas")
    def interval(self, metric: str) -> tuple[float, float]:
        return interval(*self._resampled(metric))

    def value(self, metric: str) -> float:
        """`metric` on the whole test set (pooled: the mean of its directions)."""
        directions = self._directions(metric)
        if not directions:
            raise KeyError(f"no {metric} in these scores (they have {self.metric_names()})")
        return float(np.mean([self._value(base_metric(metric), d) for d in directions]))

    # -- comparisons -------------------------------------------------------------------------------
    def comparable(self, other: Scores) -> str | None:
        """Why these and `other` cannot be compared image by image, or None when they can."""
        if self.protocol != other.protocol:
            return f"was evaluated with another protocol ({other.protocol}, not {self.protocol})"
        if self.inputs != other.inputs:
            return "was evaluated on other test images"
        return None

    @threadpool_limits.wrap(limits=1, user_api="blas")
    def compare(self, other: Scores, metric: str) -> Difference:
        """How much better these scores are than `other` on `metric` (in its direction of
        better), by a paired bootstrap. Both must be `comparable`."""
        why = self.comparable(other)
        if why:
            raise ValueError(why)
        sign = 1.0 if mode(metric) == "max" else -1.0
        mine, my_resampled = self._resampled(metric)
        theirs, their_resampled = other._resampled(metric)
        low, high = interval(sign * (mine - theirs), sign * (my_resampled - their_resampled))
        return Difference(sign * (mine - theirs), low, high)

    # -- the file ----------------------------------------------------------------------------------
    def save(self, path: str | Path) -> Path:
        path = Path(path)
        arrays = {"protocol": np.array(self.protocol)}
        arrays.update({f"paired/{k}": v for k, v in self.paired.items()})
        arrays.update({f"features/{k}": v.astype(np.float32) for k, v in self.features.items()})
        arrays.update({f"inputs/{k}": np.array(v, dtype=str) for k, v in self.inputs.items()})
        tmp = path.with_name(f".{path.name}.part")
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> Scores:
        """Read a file `save` wrote; ValueError for anything else."""
        try:
            with np.load(path, allow_pickle=False) as data:
                out = cls(str(data["protocol"]))
                for key in data.files:
                    group, _, name = key.partition("/")
                    if group == "paired":
                        out.paired[name] = data[key].astype(np.float64)
                    elif group == "features":
                        out.features[name] = data[key]
                    elif group == "inputs":
                        out.inputs[name] = [str(v) for v in data[key]]
                return out
        except (OSError, KeyError, ValueError, EOFError) as err:
            raise ValueError(f"{path}: not an evaluation scores file ({err})") from None

    @classmethod
    def load_if_present(cls, path: str | Path, without: str = "") -> Scores | None:
        """`load`, or None when there is no such file or it is not a scores file (that one with a
        warning saying so, and `without`: what goes on without it)."""
        try:
            return cls.load(path) if Path(path).is_file() else None
        except ValueError as err:
            log.warning("%s%s", err, f"; {without}" if without else "")
            return None
