"""Evaluate a model on a dataset's test split, and the `evaluate` command.

Both directions are evaluated at the model's test resolution: G_A's translations of the test A
images against the real test B images (FID, KID) and against testA_gt/ (L1, PSNR, SSIM) when the
dataset has ground truth, and G_B's the other way round. Keys are `<metric>_AtoB`,
`<metric>_BtoA` and `<metric>` = the mean of the directions that have it (`kid_*_std` too),
plus `eval_time_s`. "AtoB" is the model's direction: with --direction BtoA, G_A's input is testB/.

Translations are quantised to uint8 exactly as saved images are, so the numbers are those of
the PNGs `translate` would write. The real images' Inception features are cached (see
`metrics.FeatureCache`); an `Evaluator` also keeps the Inception network between calls, so
a trainer evaluating every epoch pays for both once.
"""

from __future__ import annotations

import argparse
import logging
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from . import metrics as M
from .config import TrainConfig
from .data import DatasetError, UnalignedDataset, load_image, to_model_input, transform
from .errors import UserError

log = logging.getLogger(__name__)

DIRECTIONS = ("AtoB", "BtoA")
Translator = Callable[[torch.Tensor, str], torch.Tensor]  # float [-1, 1] NCHW batch, "AtoB"/"BtoA" -> same


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

    def to_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}


def to_uint8(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] float -> uint8 on the CPU, rounded as `translate.to_image` saves PNGs."""
    return ((images.float().clamp(-1, 1) + 1) * 127.5 + 0.5).to(torch.uint8).cpu()


def _test_domains(cfg: TrainConfig) -> tuple[str, str]:
    return ("A", "B") if cfg.direction == "AtoB" else ("B", "A")


def _truths(root: Path, folder: str, inputs: list[Path]) -> list[Path] | None:
    """Ground-truth files for `inputs` (same relative names in <folder>_gt/), None without that folder."""
    gt_dir = root / f"{folder}_gt"
    if not gt_dir.is_dir():
        return None
    truths = [gt_dir / p.relative_to(root / folder) for p in inputs]
    missing = [t for t in truths if not t.is_file()]
    if missing:
        raise DatasetError(f"{missing[0]}: ground-truth file missing ({len(missing)} of the {len(truths)} images in "
                           f"{root / folder}/ have none); complete {gt_dir}/ or remove it")
    return truths


class Evaluator:
    """Evaluates translators on the test split of `root`; keeps the Inception network and the
    real images' features between calls. Checks everything it can up front (test folders,
    ground truth, the Inception weights) so that a training run fails before, not after, epoch 1.

    A metric that cannot be computed (paired metrics without *_gt/ folders) is reported in
    `EvalResult.unavailable`; it is an error only when none of the requested metrics can be.
    """

    def __init__(self, root: str | Path, cfg: TrainConfig, metric_names: list[str] | None = None, *,
                 device: str | torch.device = "cpu", inception_weights: str | Path | None = None,
                 feature_cache: str | Path | None = None, batch_size: int = 16, show_progress: bool = True,
                 flag: str = "--eval_metrics", inception: M.InceptionFeatures | None = None):
        self.root, self.cfg = Path(root), cfg
        self.metric_names = M.check_metric_names(metric_names or cfg.eval_metric_list(), flag)
        self.device = torch.device(device)
        self.batch_size, self.show_progress = max(1, batch_size), show_progress
        self.cache = M.FeatureCache(feature_cache)
        self.inception = inception  # an already loaded network may be shared between evaluators

        dataset = UnalignedDataset(self.root, cfg, "test", augment=False)
        first, second = _test_domains(cfg)
        self.directions = [
            _Direction("AtoB", dataset.A_paths, dataset.A_nc, dataset.B_paths, dataset.B_nc,
                       _truths(self.root, f"test{first}", dataset.A_paths)),
            _Direction("BtoA", dataset.B_paths, dataset.B_nc, dataset.A_paths, dataset.A_nc,
                       _truths(self.root, f"test{second}", dataset.B_paths)),
        ]
        self.unavailable: dict[str, str] = {}
        for d, folder in zip(self.directions, (first, second)):
            for name in self.paired:
                if d.truths is None:
                    self.unavailable[f"{name}_{d.name}"] = f"no ground truth: {self.root / f'test{folder}_gt'}/ not found"
        for name in self.paired:
            if all(f"{name}_{d}" in self.unavailable for d in DIRECTIONS):
                self.unavailable[name] = "no ground truth (testA_gt/ testB_gt/) in this dataset"
        if all(name in self.unavailable for name in self.metric_names):
            raise UserError(f"{flag} {','.join(self.metric_names)}: {self.root} has no testA_gt/ testB_gt/ ground truth "
                            "for these metrics; use fid,kid (real datasets) or a dataset with ground truth")
        # Find the weights now (cheap; fails fast with what to do), load them at the first evaluation.
        self.inception_weights = M.find_inception_weights(inception_weights) if self.distribution and not inception else None

    @property
    def distribution(self) -> list[str]:
        return [m for m in self.metric_names if m in M.DISTRIBUTION_METRICS]

    @property
    def paired(self) -> list[str]:
        return [m for m in self.metric_names if m in M.PAIRED_METRICS]

    # -- pieces --------------------------------------------------------------------------------
    def _batches(self, paths: list[Path], channels: int, extra: list[Path] | None = None,
                 extra_nc: int = 3) -> Iterator[tuple[torch.Tensor, torch.Tensor | None]]:
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
                    raise DatasetError(f"{extra[i]}: ground truth is {truth.shape[2]}x{truth.shape[1]} at the test "
                                       f"resolution but {path} is {image.shape[2]}x{image.shape[1]}; they must match")
                others.append(truth)
        if batch:
            yield flush()

    def _inception(self) -> M.InceptionFeatures:
        if self.inception is None:
            self.inception = M.load_inception(self.inception_weights, self.device)
        return self.inception

    def _real_features(self, d: _Direction) -> torch.Tensor:
        inception = self._inception()
        key = M.FeatureCache.key(files=M.files_fingerprint(d.reals), channels=d.real_nc, preprocess=self.cfg.preprocess,
                                 crop_size=self.cfg.crop_size, extractor=inception.identity, layer=M.FEATURE_LAYER)

        def compute() -> torch.Tensor:
            bar = tqdm(total=len(d.reals), desc=f"real {d.name[-1]} features", unit="img",
                       disable=not self.show_progress, leave=False)
            out = []
            for images, _ in self._batches(d.reals, d.real_nc):
                out.append(inception(images))
                bar.update(len(images))
            bar.close()
            return torch.cat(out)

        return self.cache.get_or_compute(key, compute)

    # -- the evaluation ------------------------------------------------------------------------
    def evaluate(self, translate: Translator) -> EvalResult:
        start = time.perf_counter()
        hits, misses = self.cache.hits, self.cache.misses
        result = EvalResult(metrics={}, unavailable=dict(self.unavailable))
        for d in self.directions:
            self._evaluate_direction(translate, d, result)
        for name in self.metric_names:
            values = [result.metrics[f"{name}_{d}"] for d in DIRECTIONS if f"{name}_{d}" in result.metrics]
            if values:
                result.metrics[name] = float(np.mean(values))
        result.metrics["eval_time_s"] = time.perf_counter() - start
        result.feature_cache_hits = self.cache.hits - hits
        result.feature_cache_misses = self.cache.misses - misses
        log.info("evaluated %s in %.1f s; real-set features: %d from the cache, %d computed", ",".join(self.metric_names),
                 result.metrics["eval_time_s"], result.feature_cache_hits, result.feature_cache_misses)
        return result

    @torch.no_grad()
    def _evaluate_direction(self, translate: Translator, d: _Direction, result: EvalResult) -> None:
        paired = self.paired if d.truths is not None else []
        fake_features: list[torch.Tensor] = []
        per_image: dict[str, list[torch.Tensor]] = {name: [] for name in paired}
        bar = tqdm(total=len(d.inputs), desc=f"evaluating {d.name}", unit="img", disable=not self.show_progress, leave=False)
        for images, truths in self._batches(d.inputs, d.input_nc, d.truths if paired else None, d.real_nc):
            fakes = to_uint8(translate(to_model_input(images, self.device), d.name))
            if self.distribution:
                fake_features.append(self._inception()(fakes))
            for name in paired:
                per_image[name].append(M.PAIRED_FUNCTIONS[name](fakes, truths))
            bar.update(len(images))
        bar.close()
        result.n_images[d.name] = len(d.inputs)
        for name in paired:
            result.metrics[f"{name}_{d.name}"] = float(torch.cat(per_image[name]).mean())
        if not self.distribution:
            return
        if min(len(d.inputs), len(d.reals)) < 2:
            for name in self.distribution:
                result.unavailable[f"{name}_{d.name}"] = "needs at least 2 test images per domain"
            return
        fakes, reals = torch.cat(fake_features), self._real_features(d)
        if "fid" in self.distribution:
            result.metrics[f"fid_{d.name}"] = M.fid_from_features(fakes, reals)
        if "kid" in self.distribution:
            result.metrics[f"kid_{d.name}"], result.metrics[f"kid_{d.name}_std"] = M.kid_from_features(fakes, reals)


# -- the `evaluate` command -----------------------------------------------------------------------
def generator_translator(G_A: torch.nn.Module, G_B: torch.nn.Module) -> Translator:
    def translate(images: torch.Tensor, direction: str) -> torch.Tensor:
        with torch.no_grad():
            return (G_A if direction == "AtoB" else G_B)(images)
    return translate


def _checkpoint_config(directory: Path, G_A: torch.nn.Module, G_B: torch.nn.Module) -> TrainConfig:
    """The run's config.json (test resolution, direction) when it was trained here, else the paper's
    defaults with the channels the generators have."""
    import json

    config_file = directory / "config.json"
    if config_file.is_file():
        try:
            values = json.loads(config_file.read_text())
        except ValueError as err:
            raise UserError(f"{config_file}: not valid JSON ({err}); fix or remove it") from None
        known = {f.name for f in fields(TrainConfig)}
        return TrainConfig.from_dict({k: v for k, v in values.items() if k in known})
    first_conv = next(p for p in G_A.parameters() if p.dim() == 4)
    return TrainConfig(input_nc=first_conv.shape[1], output_nc=next(p for p in G_B.parameters() if p.dim() == 4).shape[1])


def format_table(result: EvalResult, names: list[str]) -> str:
    def cell(key: str) -> str:
        value = result.metrics.get(key)
        if value is None:
            return "n/a"
        return "inf" if math.isinf(value) else f"{value:.4g}"

    rows = [f"{'metric':<8}{'AtoB':>12}{'BtoA':>12}{'combined':>12}"]
    rows += [f"{name:<8}" + "".join(f"{cell(k):>12}" for k in (f"{name}_AtoB", f"{name}_BtoA", name)) for name in names]
    return "\n".join(rows)


def _run(args: argparse.Namespace) -> int:
    from .checkpoint import load_generator
    from .cli import dump_json
    from .model import resolve_device
    from .sources import resolve_dataset

    names = M.check_metric_names(args.metrics.split(","), "--metrics")
    directory = Path(args.checkpoint_dir)
    files = [directory / f"{args.epoch}_net_G_{d}.pth" for d in "AB"]
    for path in files:
        if not path.is_file():
            raise UserError(f"--checkpoint_dir {directory}: no {path.name} there; pass the folder of a training run "
                            f"(<checkpoints_dir>/<name>/) and an --epoch whose *_net_G_A/B.pth files exist")
    device = resolve_device(args.device)
    G_A, G_B = (load_generator(path, device=device) for path in files)
    cfg = _checkpoint_config(directory, G_A, G_B)
    overrides = {k: getattr(args, k) for k in ("crop_size", "preprocess", "direction") if getattr(args, k) is not None}
    cfg = cfg.replace(max_dataset_size=0, **overrides)  # every test image
    cfg = cfg.replace(load_size=max(cfg.load_size, cfg.crop_size)).validate()
    root = resolve_dataset(args.dataroot, args.cache_dir)
    evaluator = Evaluator(root, cfg, names, device=device, inception_weights=args.inception_weights,
                          feature_cache=args.feature_cache, batch_size=args.batch_size, show_progress=not args.no_progress,
                          flag="--metrics")
    result = evaluator.evaluate(generator_translator(G_A, G_B))
    untranslated = None
    if args.untranslated:
        if cfg.input_nc != cfg.output_nc:
            raise UserError(f"--untranslated: the model maps {cfg.input_nc} to {cfg.output_nc} channels; "
                            "untranslated images cannot be scored as its outputs")
        untranslated = evaluator.evaluate(lambda images, direction: images)

    print(f"{directory} ({args.epoch}) on {root}: {result.n_images.get('AtoB', 0)} A and {result.n_images.get('BtoA', 0)} B test images")
    print(format_table(result, names))
    for key, why in result.unavailable.items():
        print(f"  {key}: unavailable ({why})")
    if untranslated:
        print("untranslated (each test image scored as its own translation: the baseline)")
        print(format_table(untranslated, names))
    print(f"real-set features: {result.feature_cache_hits} from the cache, {result.feature_cache_misses} computed; "
          f"evaluation took {result.metrics['eval_time_s']:.1f} s")
    if args.json_out:
        extra = {"untranslated": untranslated.metrics} if untranslated else {}
        dump_json({"checkpoint_dir": str(directory), "epoch": args.epoch, "dataroot": args.dataroot, **result.to_dict(), **extra},
                  args.json_out)
        print(f"wrote {args.json_out}")
    return 0


def register(subparsers) -> None:
    """Add the `evaluate` command to the CLI."""
    p = subparsers.add_parser(
        "evaluate", help="FID, KID and ground-truth metrics of a trained model on a test split",
        description="Translate a dataset's test images both ways (A->B, B->A) at the model's test resolution and score them: "
                    "FID and KID against the real images of the target domain (needs the InceptionV3 weights file "
                    f"{M.INCEPTION_FILE}), L1, PSNR and SSIM against ground truth (testA_gt/ testB_gt/, e.g. synthetic data). "
                    "Metrics that a dataset cannot give (paired metrics without ground truth) are reported as unavailable; "
                    "it is an error only when none of the requested metrics can be computed.")
    p.add_argument("--checkpoint_dir", required=True, help="a training run's folder, holding <epoch>_net_G_A.pth and _net_G_B.pth "
                   "(and config.json, from which the test resolution and direction are read)")
    p.add_argument("--dataroot", required=True, help="dataset with testA/ testB/ (testA_gt/ testB_gt/ for l1, psnr, ssim): a folder or any dataset reference")
    p.add_argument("--metrics", default=",".join(M.ALL_METRICS),
                   help="comma-separated, from fid, kid, l1, psnr, ssim (default: all; paired ones are skipped without ground truth)")
    p.add_argument("--epoch", default="latest", help="which checkpoint files: latest or an epoch number (default: latest)")
    p.add_argument("--json", dest="json_out", default=None, metavar="OUT", help="also write the results to this JSON file")
    p.add_argument("--inception_weights", default=None, metavar="FILE",
                   help=f"the InceptionV3 weights ({M.INCEPTION_FILE}; default: ${M.WEIGHTS_ENV}, then torch's hub cache, "
                        f"then a download when online, never with {M.OFFLINE_ENV}=1)")
    p.add_argument("--feature_cache", default=None, metavar="DIR",
                   help="cache of real-image features (default: $CYCLEGAN_CACHE_DIR/features or ~/.cache/cyclegan/features)")
    p.add_argument("--cache_dir", default=None, metavar="DIR", help="dataset cache for remote dataset references")
    p.add_argument("--untranslated", action="store_true",
                   help="also score the test images as they are, untranslated: the baseline a translation must beat "
                        "(JSON: 'untranslated')")
    p.add_argument("--batch_size", type=int, default=16, help="images translated and scored per batch (default: 16)")
    p.add_argument("--crop_size", type=int, default=None, help="test resolution (default: the run's config.json, else 256)")
    p.add_argument("--preprocess", default=None, choices=("resize_and_crop", "crop", "scale_width", "scale_width_and_crop", "none"),
                   help="how test images are brought to the test resolution (default: the run's config.json)")
    p.add_argument("--direction", default=None, choices=DIRECTIONS, help="the run's --direction (default: from config.json, else AtoB)")
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")
    p.add_argument("--no_progress", action="store_true", help="no progress bars")
    p.add_argument("--debug", action="store_true", help="show full tracebacks")
    p.set_defaults(run=_run)
