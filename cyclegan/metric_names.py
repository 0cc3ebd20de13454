"""The names of the metrics a run reports, and which way each is better.

Every epoch the trainer reports the model's losses (`loss_<name>` for each of LOSS_NAMES), `loss_G`
(the generators' total) and `cycle_l1` (the cycle error without its weights, comparable across
runs); with --eval_freq also evaluation metrics on the test split, one per translation direction
(`fid_AtoB`, `fid_BtoA`) and their mean (`fid`). Imports no torch: the Ray driver, the manifest
checks and the MLflow code read these names too.
"""

from __future__ import annotations

from collections.abc import Sequence

from .errors import UserError

LOSS_NAMES = (
    "D_A",
    "G_A",
    "cycle_A",
    "idt_A",
    "D_B",
    "G_B",
    "cycle_B",
    "idt_B",
)  # the model's losses, in this order
DIRECTIONS = (
    "AtoB",
    "BtoA",
)  # G_A's translations, G_B's (in the model's direction: with --direction BtoA, G_A reads testB/)
# Translated vs. real target images: need the Inception weights. `fid`/`kid`: the legacy protocol
# (uint8 images, torch-fidelity's TF-style bilinear resize); `*_clean`: clean-fid's (a float PIL
# bicubic resize with antialiasing to the network's input, no quantisation after it).
LEGACY_DISTRIBUTION_METRICS = ("fid", "kid")
CLEAN_METRICS = ("fid_clean", "kid_clean")
DISTRIBUTION_METRICS = LEGACY_DISTRIBUTION_METRICS + CLEAN_METRICS
PAIRED_METRICS = ("l1", "psnr", "ssim")  # translated vs. ground truth: need testA_gt/ testB_gt/
# Translated vs. its own input: how much of the input's structure it kept (cyclegan.structure).
STRUCTURE_METRICS = ("dino_struct",)
PER_IMAGE_METRICS = PAIRED_METRICS + STRUCTURE_METRICS  # one value per test image
EVAL_METRICS = DISTRIBUTION_METRICS + PAIRED_METRICS + STRUCTURE_METRICS
# What `cyclegan evaluate` reports unless asked otherwise (the new metrics are opt-in: their
# numbers are new, and the legacy defaults' protocol fingerprint stays what it was).
DEFAULT_EVAL_METRICS = LEGACY_DISTRIBUTION_METRICS + PAIRED_METRICS
EPOCH_METRICS = (
    "cycle_l1",
    "loss_G",
    "loss_D_A",
    "loss_D_B",
)  # what every epoch reports that can rank trials
MAXIMIZED = ("psnr", "ssim")  # higher is better; lower for every other metric
# FID and KID's InceptionV3 weights (torch-fidelity's file name), and the environment variables that
# find them.
INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"
WEIGHTS_ENV = "CYCLEGAN_INCEPTION_WEIGHTS"
OFFLINE_ENV = "CYCLEGAN_OFFLINE"  # 1: never download them
# dino_struct's weights (DINO's ViT-B/8 checkpoint), never downloaded, and their variable.
DINO_FILE = "dino_vitbase8_pretrain.pth"
DINO_WEIGHTS_ENV = "CYCLEGAN_DINO_WEIGHTS"
# Once the fast path (torch.compile, CUDA graphs) failed and the run went on eagerly: 1 from then
# on, and why.
FALLBACK_METRIC = "fast_path_fallback"
# Reported with each evaluation: the fingerprint of how it scored (cyclegan.scores).
PROTOCOL_KEY = "eval_protocol"
FALLBACK_REASON = "fast_path_fallback_reason"


def per_direction(metric: str, direction: str) -> str:
    """`fid`, `AtoB` -> `fid_AtoB`."""
    return f"{metric}_{direction}"


def base_metric(name: str) -> str:
    """The metric without its direction: `fid_AtoB` -> `fid`, `fid` -> `fid`."""
    for direction in DIRECTIONS:
        if name.endswith("_" + direction):
            return name.removesuffix("_" + direction)
    return name


def mode(metric: str) -> str:
    """'max' when a higher value of `metric` (with or without its direction) is better, else
    'min'."""
    return "max" if base_metric(metric) in MAXIMIZED else "min"


def check_eval_metrics(names: Sequence[str], flag: str = "--metrics") -> list[str]:
    """The evaluation metrics `names` asks for, lower-cased and without repeats; a UserError naming
    `flag` for an unknown one or none at all."""
    names = [n.strip().lower() for n in names if n.strip()]
    unknown = sorted(set(names) - set(EVAL_METRICS))
    if unknown:
        raise UserError(
            f"{flag}: unknown metric(s) {', '.join(unknown)}; use {', '.join(EVAL_METRICS)}"
        )
    if not names:
        raise UserError(f"{flag}: no metric given; use some of {', '.join(EVAL_METRICS)}")
    return list(dict.fromkeys(names))
