"""Evaluate a model on a dataset's test split (the `evaluate` command is
cyclegan/commands/evaluate.py).

Both directions are evaluated at the model's test resolution: G_A's translations of the test A
images against the real test B images (FID, KID) and against testA_gt/ (L1, PSNR, SSIM) when the
dataset has ground truth, and G_B's the other way round. Keys are `<metric>_AtoB`,
`<metric>_BtoA` and `<metric>` = the mean of the directions that have it (`kid_*_std` too),
plus `eval_time_s`. "AtoB" is the model's direction: with --direction BtoA, G_A's input is testB/.

Every metric also gets its 95 % bootstrap interval (`<key>_ci_low`, `<key>_ci_high`), and the
result keeps its evidence, `EvalResult.scores` (cyclegan.scores: per-image values, features, the
protocol's fingerprint), from which two models are compared image by image. `untranslated()`
scores the test images as their own translations: the reference a translation must beat.

Translations are quantised to uint8 exactly as saved images are, so the numbers are those of
the PNGs `translate` would write. The real images' Inception features are cached (see
`metrics.FeatureCache`); an `Evaluator` also keeps the Inception network between calls, so
a trainer evaluating every epoch pays for both once.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from . import metrics as M
from .config import TrainConfig
from .data import DatasetError, UnalignedDataset, domains, load_image, to_model_input, transform
from .errors import UserError
from .metric_names import (
    CLEAN_METRICS,
    DIRECTIONS,
    DISTRIBUTION_METRICS,
    LEGACY_DISTRIBUTION_METRICS,
    PAIRED_METRICS,
    check_eval_metrics,
    per_direction,
)
from .scores import Scores, feature_key
from .structure import DEFINITION, StructureDistance, find_dino_weights, load_structure

log = logging.getLogger(__name__)

Translator = Callable[
    [torch.Tensor, str], torch.Tensor
]  # float [-1, 1] NCHW batch, "AtoB"/"BtoA" -> same


@dataclass
class _Direction:
    name: str
    inputs: list[Path]
    input_nc: int
    reals: list[Path]  # real images of the target domain
    real_nc: int
    truths: list[Path] | None  # the true translation of each input, or None without ground truth


@dataclass
class EvalResult:
    metrics: dict[str, float]
    unavailable: dict[str, str] = field(default_factory=dict)  # metric key -> why
    n_images: dict[str, int] = field(default_factory=dict)
    feature_cache_hits: int = 0  # real-set feature extractions answered from the cache...
    feature_cache_misses: int = 0  # ...and computed (then cached)
    scores: Scores | None = None  # the evidence: per-image values, features, protocol

    @property
    def protocol(self) -> str:
        return self.scores.protocol if self.scores else ""

    def to_dict(self) -> dict:
        out = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "scores"}
        return {**out, "protocol": self.protocol}


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] float -> uint8 on the CPU, rounded as `translate.to_image` saves PNGs."""
    return ((images.float().clamp(-1, 1) + 1) * 127.5 + 0.5).to(torch.uint8).cpu()


def _truths(root: Path, folder: str, inputs: list[Path]) -> list[Path] | None:
    """Ground-truth files for `inputs` (same relative names in <folder>_gt/), None without that
    folder."""
    gt_dir = root / f"{folder}_gt"
    if not gt_dir.is_dir():
        return None
    truths = [gt_dir / p.relative_to(root / folder) for p in inputs]
    missing = [t for t in truths if not t.is_file()]
    if missing:
        raise DatasetError(
            f"{missing[0]}: ground-truth file missing ({len(missing)} of the {len(truths)} images "
            f"in "
            f"{root / folder}/ have none); complete {gt_dir}/ or remove it"
        )
    return truths


class Evaluator:
    """Evaluates translators on the test split of `root`; keeps the Inception network and the
    real images' features between calls. Checks everything it can up front (test folders,
    ground truth, the Inception weights) so that a training run fails before, not after, epoch 1.

    A metric that cannot be computed (paired metrics without *_gt/ folders) is reported in
    `EvalResult.unavailable`; it is an error only when none of the requested metrics can be.
    """

    def __init__(
        self,
        root: str | Path,
        cfg: TrainConfig,
        metric_names: list[str] | None = None,
        *,
        device: str | torch.device = "cpu",
        inception_weights: str | Path | None = None,
        feature_cache: str | Path | None = None,
        batch_size: int = 16,
        show_progress: bool = True,
        flag: str = "--eval_metrics",
        inception: M.InceptionFeatures | None = None,
        structure: StructureDistance | None = None,
    ):
        self.root, self.cfg = Path(root), cfg
        self.metric_names = check_eval_metrics(metric_names or cfg.eval_metric_list(), flag)
        self.device = torch.device(device)
        self.batch_size, self.show_progress = max(1, batch_size), show_progress
        self.cache = M.FeatureCache(feature_cache)
        self.inception = inception  # an already loaded network may be shared between evaluators
        self.structure = structure  # the same for DINO-struct's ViT

        dataset = UnalignedDataset(self.root, cfg, "test", augment=False)
        first, second = domains(cfg)
        self.directions = [
            _Direction(
                "AtoB",
                dataset.A_paths,
                dataset.A_nc,
                dataset.B_paths,
                dataset.B_nc,
                _truths(self.root, f"test{first}", dataset.A_paths),
            ),
            _Direction(
                "BtoA",
                dataset.B_paths,
                dataset.B_nc,
                dataset.A_paths,
                dataset.A_nc,
                _truths(self.root, f"test{second}", dataset.B_paths),
            ),
        ]
        self.unavailable: dict[str, str] = {}
        for d, folder in zip(self.directions, (first, second)):
            for name in self.paired:
                if d.truths is None:
                    self.unavailable[per_direction(name, d.name)] = (
                        f"no ground truth: {self.root / f'test{folder}_gt'}/ not found"
                    )
        for name in self.paired:
            if all(per_direction(name, d) in self.unavailable for d in DIRECTIONS):
                self.unavailable[name] = "no ground truth (testA_gt/ testB_gt/) in this dataset"
        if all(name in self.unavailable for name in self.metric_names):
            raise UserError(
                f"{flag} {','.join(self.metric_names)}: {self.root} has no testA_gt/ testB_gt/ "
                f"ground truth "
                "for these metrics; use fid,kid (real datasets) or a dataset with ground truth"
            )
        # Find the weights now (cheap; fails fast with what to do), load them at the first
        # evaluation.
        self.inception_weights = (
            M.find_inception_weights(inception_weights)
            if self.distribution and not inception
            else None
        )
        self.structure_weights = (
            find_dino_weights(cfg.structure_weights or None)
            if "dino_struct" in self.metric_names and not structure
            else None
        )
        self.protocol = self._protocol()

    def _digest(self, paths: list[Path]) -> str:
        """A hash of the files' names (relative to the dataset) and bytes."""
        digest = hashlib.sha256()
        for path in paths:
            digest.update(str(path.relative_to(self.root)).encode() + b"\0")
            digest.update(path.read_bytes())
        return digest.hexdigest()

    def _protocol(self) -> str:
        """The fingerprint of how this evaluator scores: resolution and resizing, the test images
        (their number and a hash of their bytes), for FID/KID the extractor's weights, for the
        clean metrics their resize."""
        cfg = self.cfg
        digest = self._digest([p for d in self.directions for p in (*d.inputs, *(d.truths or ()))])
        resize = f"{cfg.load_size}" if "resize" in cfg.preprocess else "-"
        parts = [
            f"res={cfg.crop_size}",
            f"preprocess={cfg.preprocess}",
            f"load={resize}",
            "filter=bicubic",
            f"test={len(self.directions[0].inputs)}+{len(self.directions[1].inputs)}",
            f"test_sha256={digest[:16]}",
        ]
        if self.distribution:
            weights = (
                self.inception.sha256
                if self.inception
                else hashlib.sha256(Path(self.inception_weights).read_bytes()).hexdigest()
            )
            parts += ["fid=torch-fidelity-inception-v3-compat-pool3", f"weights_sha256={weights}"]
            if self.clean:
                parts.append(f"clean={M.CLEAN_RESIZE}@{M.INCEPTION_SIZE}")
        else:
            parts.append("fid=none")
        if "dino_struct" in self.metric_names:
            weights = (
                self.structure.sha256
                if self.structure
                else hashlib.sha256(Path(self.structure_weights).read_bytes()).hexdigest()
            )
            parts += [f"struct={DEFINITION}", f"struct_weights_sha256={weights}"]
        return ";".join(parts)

    @property
    def distribution(self) -> list[str]:
        return [m for m in self.metric_names if m in DISTRIBUTION_METRICS]

    @property
    def clean(self) -> list[str]:
        return [m for m in self.metric_names if m in CLEAN_METRICS]

    @property
    def paired(self) -> list[str]:
        return [m for m in self.metric_names if m in PAIRED_METRICS]

    # -- pieces --------------------------------------------------------------------------------
    def _batches(
        self, paths: list[Path], channels: int, extra: list[Path] | None = None, extra_nc: int = 3
    ) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
        """uint8 batches at the test resolution (images of one size together), optionally with
        the matching `extra` images (ground truth) at the same resolution."""
        batch: list[torch.Tensor] = []
        others: list[torch.Tensor] = []

        def flush():
            return torch.stack(batch), (torch.stack(others) if extra is not None else None)

        for i, path in enumerate(paths):
            image = transform(load_image(path, channels), self.cfg, None)
            if batch and (len(batch) == self.batch_size or image.shape != batch[0].shape):
                yield flush()
                batch, others = [], []
            batch.append(image)
            if extra is not None:
                truth = transform(load_image(extra[i], extra_nc), self.cfg, None)
                if truth.shape[1:] != image.shape[1:]:
                    raise DatasetError(
                        f"{extra[i]}: ground truth is {truth.shape[2]}x{truth.shape[1]} at the "
                        f"test "
                        f"resolution but {path} is {image.shape[2]}x{image.shape[1]}; they must "
                        f"match"
                    )
                others.append(truth)
        if batch:
            yield flush()

    def _structure(self) -> StructureDistance:
        if self.structure is None:
            self.structure = load_structure(self.structure_weights, self.device)
        return self.structure

    def _inception(self) -> M.InceptionFeatures:
        if self.inception is None:
            self.inception = M.load_inception(self.inception_weights, self.device)
        return self.inception

    def _real_features(self, d: _Direction, clean: bool = False) -> torch.Tensor:
        """The real target images' features (legacy, or clean-fid's resize), from the node's
        cache when any trial or epoch has extracted them before. The clean ones are keyed by the
        images' content and the protocol (which names the resolution, the resize, the weights)."""
        inception = self._inception()
        if clean:
            key = M.FeatureCache.key(
                reals=self._digest(d.reals), channels=d.real_nc, protocol=self.protocol
            )
        else:
            key = M.FeatureCache.key(
                files=M.files_fingerprint(d.reals),
                channels=d.real_nc,
                preprocess=self.cfg.preprocess,
                crop_size=self.cfg.crop_size,
                extractor=inception.identity,
                layer=M.FEATURE_LAYER,
            )
        extract = inception.clean if clean else inception

        def compute() -> torch.Tensor:
            bar = tqdm(
                total=len(d.reals),
                desc=f"real {d.name[-1]} features",
                unit="img",
                disable=not self.show_progress,
                leave=False,
            )
            out = []
            for images, _ in self._batches(d.reals, d.real_nc):
                out.append(extract(images))
                bar.update(len(images))
            bar.close()
            return torch.cat(out)

        return self.cache.get_or_compute(key, compute)

    # -- the evaluation ------------------------------------------------------------------------
    def untranslated(self) -> EvalResult | None:
        """The test images scored as their own translations (None when the domains' channels
        differ). Their Inception features are the other direction's real ones: from the cache."""
        if any(d.input_nc != d.real_nc for d in self.directions):
            return None
        return self.evaluate(lambda images, direction: images, untranslated=True)

    def evaluate(self, translate: Translator, untranslated: bool = False) -> EvalResult:
        start = time.perf_counter()
        hits, misses = self.cache.hits, self.cache.misses
        result = EvalResult(metrics={}, unavailable=dict(self.unavailable))
        result.scores = Scores(self.protocol)
        for d in self.directions:
            self._evaluate_direction(translate, d, result, untranslated)
        for name in self.metric_names:
            values = [
                result.metrics[per_direction(name, d)]
                for d in DIRECTIONS
                if per_direction(name, d) in result.metrics
            ]
            if values:
                result.metrics[name] = float(np.mean(values))
        computed = [n for n in self.metric_names if n in result.metrics]
        bootstrap = time.perf_counter()
        result.metrics.update(result.scores.intervals(computed))
        result.metrics["eval_bootstrap_s"] = time.perf_counter() - bootstrap
        result.metrics["eval_time_s"] = time.perf_counter() - start
        result.feature_cache_hits = self.cache.hits - hits
        result.feature_cache_misses = self.cache.misses - misses
        log.info(
            "evaluated %s in %.1f s; real-set features: %d from the cache, %d computed",
            ",".join(self.metric_names),
            result.metrics["eval_time_s"],
            result.feature_cache_hits,
            result.feature_cache_misses,
        )
        return result

    @torch.no_grad()
    def _evaluate_direction(
        self, translate: Translator, d: _Direction, result: EvalResult, untranslated: bool
    ) -> None:
        paired = self.paired if d.truths is not None else []
        computes_features = not untranslated
        legacy = [m for m in self.distribution if m in LEGACY_DISTRIBUTION_METRICS]
        fake_features: list[torch.Tensor] = []
        clean_features: list[torch.Tensor] = []
        structure = "dino_struct" in self.metric_names
        per_image: dict[str, list[torch.Tensor]] = {name: [] for name in paired}
        per_image["dino_struct"] = []
        bar = tqdm(
            total=len(d.inputs),
            desc=f"evaluating {d.name}",
            unit="img",
            disable=not self.show_progress,
            leave=False,
        )
        for images, truths in self._batches(
            d.inputs, d.input_nc, d.truths if paired else None, d.real_nc
        ):
            fakes = to_uint8(translate(to_model_input(images, self.device), d.name))
            if computes_features and legacy:
                fake_features.append(self._inception()(fakes))
            if computes_features and self.clean:
                clean_features.append(self._inception().clean(fakes))
            for name in paired:
                per_image[name].append(M.PAIRED_FUNCTIONS[name](fakes, truths))
            if structure:  # how far each translation moved from its input's structure
                per_image["dino_struct"].append(
                    torch.zeros(len(images), dtype=torch.float64)
                    if untranslated
                    else self._structure()(images, fakes)
                )
            bar.update(len(images))
        bar.close()
        result.n_images[d.name] = len(d.inputs)
        result.scores.inputs[d.name] = [str(p.relative_to(self.root)) for p in d.inputs]
        for name in [*paired, "dino_struct"] if structure else paired:
            values = torch.cat(per_image[name])
            result.scores.paired[per_direction(name, d.name)] = values.numpy()
            result.metrics[per_direction(name, d.name)] = float(values.mean())
        if not self.distribution:
            return
        if min(len(d.inputs), len(d.reals)) < 2:
            for name in self.distribution:
                result.unavailable[per_direction(name, d.name)] = (
                    "needs at least 2 test images per domain"
                )
            return
        other = next(o for o in self.directions if o is not d)
        for names, computed, clean in (
            (legacy, fake_features, False),
            (self.clean, clean_features, True),
        ):
            if not names:
                continue
            reals = self._real_features(d, clean)
            # untranslated: the inputs are the other direction's real images
            fakes = self._real_features(other, clean) if untranslated else torch.cat(computed)
            result.scores.features[feature_key(names[0], "fake", d.name)] = fakes.numpy()
            result.scores.features[feature_key(names[0], "real", d.name)] = reals.numpy()
            for name in names:
                key = per_direction(name, d.name)
                if name.startswith("fid"):
                    result.metrics[key] = M.fid_from_features(fakes, reals)
                else:
                    result.metrics[key], result.metrics[key + "_std"] = M.kid_from_features(
                        fakes, reals
                    )
