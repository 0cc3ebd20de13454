"""`python -m cyclegan evaluate`: FID, KID and ground-truth metrics of a trained run on a test split
(cyclegan.evaluate)."""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING

from ..config import PREPROCESS_MODES, TrainConfig
from ..errors import UserError
from ..metric_names import (
    DEFAULT_EVAL_METRICS,
    DINO_FILE,
    DINO_WEIGHTS_ENV,
    DIRECTIONS,
    EVAL_METRICS,
    INCEPTION_FILE,
    OFFLINE_ENV,
    WEIGHTS_ENV,
    check_eval_metrics,
    per_direction,
)
from ..run_files import CONFIG_FILE, LATEST, network_file
from .runner import dump_json

if TYPE_CHECKING:  # torch loads when the command runs, not for --help
    from torch import Tensor, nn

    from ..evaluate import EvalResult, Translator


def generator_translator(G_A: nn.Module, G_B: nn.Module) -> Translator:
    """What the Evaluator translates with: G_A for AtoB, G_B for BtoA."""
    import torch

    def translate(images: Tensor, direction: str) -> Tensor:
        with torch.no_grad():
            return (G_A if direction == "AtoB" else G_B)(images)

    return translate


def _checkpoint_config(directory: Path, G_A: nn.Module, G_B: nn.Module) -> TrainConfig:
    """The run's config.json (test resolution, direction) when it was trained here, else the paper's
    defaults with the channels the generators have."""
    config_file = directory / CONFIG_FILE
    if config_file.is_file():
        try:
            values = json.loads(config_file.read_text())
        except ValueError as err:
            raise UserError(f"{config_file}: not valid JSON ({err}); fix or remove it") from None
        known = {f.name for f in fields(TrainConfig)}
        return TrainConfig.from_dict({k: v for k, v in values.items() if k in known})
    first_conv = next(p for p in G_A.parameters() if p.dim() == 4)
    return TrainConfig(
        input_nc=first_conv.shape[1],
        output_nc=next(p for p in G_B.parameters() if p.dim() == 4).shape[1],
    )


def format_table(result: EvalResult, names: list[str]) -> str:
    def cell(key: str) -> str:
        value = result.metrics.get(key)
        if value is None:
            return "n/a"
        return "inf" if math.isinf(value) else f"{value:.4g}"

    def interval(name: str) -> str:
        low, high = (result.metrics.get(f"{name}_ci_{end}") for end in ("low", "high"))
        if low is None or high is None or math.isnan(low):
            return ""
        return f"  [{low:.4g}, {high:.4g}]"

    rows = [f"{'metric':<12}{'AtoB':>12}{'BtoA':>12}{'combined':>12}  95% interval (combined)"]
    rows += [
        f"{name:<12}"
        + "".join(f"{cell(k):>12}" for k in (*(per_direction(name, d) for d in DIRECTIONS), name))
        + interval(name)
        for name in names
    ]
    return "\n".join(rows)


def run(args: argparse.Namespace) -> int:
    from ..checkpoint import load_generator
    from ..evaluate import Evaluator
    from ..model import resolve_device
    from ..sources import resolve_dataset

    names = check_eval_metrics(args.metrics.split(","), "--metrics")
    directory = Path(args.checkpoint_dir)
    files = [directory / network_file(args.epoch, name) for name in ("G_A", "G_B")]
    for path in files:
        if not path.is_file():
            raise UserError(
                f"--checkpoint_dir {directory}: no {path.name} there; pass the folder of a "
                f"training run "
                f"(<checkpoints_dir>/<name>/) and an --epoch whose *_net_G_A/B.pth files exist"
            )
    device = resolve_device(args.device)
    G_A, G_B = (load_generator(path, device=device) for path in files)
    cfg = _checkpoint_config(directory, G_A, G_B)
    overrides = {
        k: getattr(args, k)
        for k in ("crop_size", "preprocess", "direction")
        if getattr(args, k) is not None
    }
    crop_size = overrides.get("crop_size", cfg.crop_size)
    if args.structure_weights:
        overrides["structure_weights"] = args.structure_weights
    cfg = cfg.replace(
        max_dataset_size=0, load_size=max(cfg.load_size, crop_size), **overrides
    )  # every test image
    root = resolve_dataset(args.dataroot, args.cache_dir)
    evaluator = Evaluator(
        root,
        cfg,
        names,
        device=device,
        inception_weights=args.inception_weights,
        feature_cache=args.feature_cache,
        batch_size=args.batch_size,
        show_progress=not args.no_progress,
        flag="--metrics",
    )
    result = evaluator.evaluate(generator_translator(G_A, G_B))
    untranslated = None
    if args.untranslated:
        if cfg.input_nc != cfg.output_nc:
            raise UserError(
                f"--untranslated: the model maps {cfg.input_nc} to {cfg.output_nc} channels; "
                "untranslated images cannot be scored as its outputs"
            )
        untranslated = evaluator.evaluate(lambda images, direction: images)

    print(
        f"{directory} ({args.epoch}) on {root}: {result.n_images.get('AtoB', 0)} A and "
        f"{result.n_images.get('BtoA', 0)} B test images"
    )
    print(format_table(result, names))
    for key, why in result.unavailable.items():
        print(f"  {key}: unavailable ({why})")
    if untranslated:
        print("untranslated (each test image scored as its own translation: the baseline)")
        print(format_table(untranslated, names))
    print(
        f"real-set features: {result.feature_cache_hits} from the cache, "
        f"{result.feature_cache_misses} computed; "
        f"evaluation took {result.metrics['eval_time_s']:.1f} s"
    )
    if args.json_out:
        extra = {"untranslated": untranslated.metrics} if untranslated else {}
        dump_json(
            {
                "checkpoint_dir": str(directory),
                "epoch": args.epoch,
                "dataroot": args.dataroot,
                **result.to_dict(),
                **extra,
            },
            args.json_out,
        )
        print(f"wrote {args.json_out}")
    return 0


def register(subparsers) -> None:
    """Add the `evaluate` command to the CLI."""
    p = subparsers.add_parser(
        "evaluate",
        help="FID, KID and ground-truth metrics of a trained model on a test split",
        description="Translate a dataset's test images both ways (A->B, B->A) at the model's test "
        "resolution and score them: "
        "FID and KID against the real images of the target domain (needs the InceptionV3 weights "
        "file "
        f"{INCEPTION_FILE}), L1, PSNR and SSIM against ground truth (testA_gt/ testB_gt/, e.g. "
        f"synthetic data). "
        "Metrics that a dataset cannot give (paired metrics without ground truth) are reported as "
        "unavailable; "
        "it is an error only when none of the requested metrics can be computed.",
    )
    p.add_argument(
        "--checkpoint_dir",
        required=True,
        help="a training run's folder, holding <epoch>_net_G_A.pth and _net_G_B.pth "
        "(and config.json, from which the test resolution and direction are read)",
    )
    p.add_argument(
        "--dataroot",
        required=True,
        help=(
            "dataset with testA/ testB/ (testA_gt/ testB_gt/ for l1, psnr, ssim): a folder or any "
            "dataset reference"
        ),
    )
    p.add_argument(
        "--metrics",
        default=",".join(DEFAULT_EVAL_METRICS),
        help=(
            f"comma-separated, from {', '.join(EVAL_METRICS)} (default: "
            f"{','.join(DEFAULT_EVAL_METRICS)}; paired ones are skipped without ground truth)"
        ),
    )
    p.add_argument(
        "--epoch",
        default=LATEST,
        help="which checkpoint files: latest or an epoch number (default: latest)",
    )
    p.add_argument(
        "--json",
        dest="json_out",
        default=None,
        metavar="OUT",
        help="also write the results to this JSON file",
    )
    p.add_argument(
        "--inception_weights",
        default=None,
        metavar="FILE",
        help=f"the InceptionV3 weights ({INCEPTION_FILE}; default: ${WEIGHTS_ENV}, then torch's "
        f"hub cache, "
        f"then a download when online, never with {OFFLINE_ENV}=1)",
    )
    p.add_argument(
        "--structure_weights",
        default=None,
        metavar="FILE",
        help=f"DINO's ViT-B/8 weights for dino_struct ({DINO_FILE}; default: ${DINO_WEIGHTS_ENV}, "
        "then torch's hub cache; never downloaded)",
    )
    p.add_argument(
        "--feature_cache",
        default=None,
        metavar="DIR",
        help=(
            "cache of real-image features (default: $CYCLEGAN_CACHE_DIR/features or "
            "~/.cache/cyclegan/features)"
        ),
    )
    p.add_argument(
        "--cache_dir",
        default=None,
        metavar="DIR",
        help="dataset cache for remote dataset references",
    )
    p.add_argument(
        "--untranslated",
        action="store_true",
        help="also score the test images as they are, untranslated: the baseline a translation "
        "must beat "
        "(JSON: 'untranslated')",
    )
    p.add_argument(
        "--batch_size",
        type=int,
        default=16,
        help="images translated and scored per batch (default: 16)",
    )
    p.add_argument(
        "--crop_size",
        type=int,
        default=None,
        help="test resolution (default: the run's config.json, else 256)",
    )
    p.add_argument(
        "--preprocess",
        default=None,
        choices=PREPROCESS_MODES,
        help="how test images are brought to the test resolution (default: the run's config.json)",
    )
    p.add_argument(
        "--direction",
        default=None,
        choices=DIRECTIONS,
        help="the run's --direction (default: from config.json, else AtoB)",
    )
    p.add_argument("--device", default="auto", help="cpu, cuda, cuda:N or auto")
    p.add_argument("--no_progress", action="store_true", help="no progress bars")
    p.add_argument("--debug", action="store_true", help="show full tracebacks")
    p.set_defaults(run=run)
