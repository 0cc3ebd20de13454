"""The one training configuration object, with the paper's defaults.

Field names follow the reference implementation's command-line flags, so
`--lambda_identity 0.5` means what it meant there. Every field carries its
help text; the CLI, the checkpoint and the manifest are all derived from this
dataclass, so there is exactly one place to add an option. A TrainConfig checks
itself when it is built (and `replace()` builds a new one), so every TrainConfig
that exists is valid, and it is frozen: it is passed along as it is.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
from collections.abc import Collection
from dataclasses import dataclass, field, fields
from types import SimpleNamespace
from typing import Any

from .architectures import (
    DISCRIMINATORS,
    GENERATOR_NAMES,
    NORMS,
    discriminator_smallest_side,
    find_generator,
    generator_size_rule,
)
from .errors import UserError
from .metric_names import (
    DINO_FILE,
    DINO_WEIGHTS_ENV,
    DIRECTIONS,
    EVAL_METRICS,
    INCEPTION_FILE,
    WEIGHTS_ENV,
)
from .urls import mask_userinfo

INIT_TYPES = ("normal", "xavier", "kaiming", "orthogonal")
GAN_MODES = ("lsgan", "vanilla", "wgangp")
LR_POLICIES = ("linear", "step", "plateau", "cosine")
PREPROCESS_MODES = ("resize_and_crop", "crop", "scale_width", "scale_width_and_crop", "none")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")
COMPILE_MODES = ("auto", "none", "default", "max-autotune")


def _opt(
    default: Any,
    help: str,
    choices: Collection[str] | None = None,
    group: str = "training",
    names: Collection[str] | None = None,
) -> Any:
    """A field with its help. `choices`: the values argparse accepts; `names`: values that may be
    patterns (resnet_<N>blocks), listed in the help and checked by TrainConfig."""
    meta = {"help": help, "group": group}
    if choices:
        meta["choices"] = choices
    if names:
        meta["names"] = names
    return field(default=default, metadata=meta)


@dataclass(frozen=True)
class TrainConfig:
    # --- experiment -------------------------------------------------------------------------
    dataroot: str = _opt(
        "",
        "dataset: a folder with trainA/ trainB/ (testA/ testB/), or any dataset reference",
        group="experiment",
    )
    name: str = _opt(
        "experiment_name",
        "name of the experiment; outputs go to <checkpoints_dir>/<name>/",
        group="experiment",
    )
    checkpoints_dir: str = _opt("./checkpoints", "where experiments are stored", group="experiment")
    seed: int = _opt(
        0,
        "random seed for weights, data order, augmentation and the image pool",
        group="experiment",
    )
    device: str = _opt(
        "auto", "cpu, cuda, cuda:N or auto (cuda when available)", group="experiment"
    )
    cache_dir: str = _opt(
        "",
        "dataset cache (default: $CYCLEGAN_CACHE_DIR or ~/.cache/cyclegan/datasets)",
        group="experiment",
    )
    s3_endpoint_url: str = _opt(
        "",
        "S3-compatible endpoint for s3:// datasets, e.g. MinIO or Ceph (default: "
        "$AWS_ENDPOINT_URL_S3, "
        "then $AWS_ENDPOINT_URL, then AWS)",
        group="experiment",
    )
    # --- model -----------------------------------------------------------------------------
    input_nc: int = _opt(3, "channels of domain A images (3: RGB, 1: grayscale)", group="model")
    output_nc: int = _opt(3, "channels of domain B images", group="model")
    netG: str = _opt(
        "resnet_9blocks",
        "generator; resnet_<N>blocks has N residual blocks (the paper's: 9 for 256x256 images, "
        "6 for 128x128)",
        group="model",
        names=GENERATOR_NAMES,
    )
    netD: str = _opt(
        "basic",
        "discriminator: basic (70x70 PatchGAN), n_layers (PatchGAN with --n_layers_D) or pixel "
        "(1x1)",
        DISCRIMINATORS,
        group="model",
    )
    n_layers_D: int = _opt(3, "discriminator depth when --netD n_layers", group="model")
    ngf: int = _opt(64, "generator filters in the last conv layer", group="model")
    ndf: int = _opt(64, "discriminator filters in the first conv layer", group="model")
    norm: str = _opt(
        "instance",
        "normalization: instance, batch (synchronized under DDP) or none",
        NORMS,
        group="model",
    )
    init_type: str = _opt("normal", "weight initialization", INIT_TYPES, group="model")
    init_gain: float = _opt(0.02, "scale of the initialization (std for normal)", group="model")
    dropout: bool = _opt(
        False, "dropout (p=0.5) in the generator; off for CycleGAN, as in the paper", group="model"
    )
    # --- losses ----------------------------------------------------------------------------
    gan_mode: str = _opt(
        "lsgan",
        "GAN objective: lsgan (paper), vanilla (cross-entropy) or wgangp",
        GAN_MODES,
        group="loss",
    )
    lambda_A: float = _opt(10.0, "weight of the cycle loss A -> B -> A", group="loss")
    lambda_B: float = _opt(10.0, "weight of the cycle loss B -> A -> B", group="loss")
    lambda_identity: float = _opt(
        0.5,
        "identity loss weight relative to lambda (0.5 in the paper's painting<->photo runs; 0 "
        "disables it)",
        group="loss",
    )
    lambda_gp: float = _opt(
        10.0, "gradient penalty weight, only with --gan_mode wgangp", group="loss"
    )
    pool_size: int = _opt(
        50,
        "size of the history of generated images shown to the discriminators (0: no pool)",
        group="loss",
    )
    # --- optimisation ----------------------------------------------------------------------
    lr: float = _opt(0.0002, "initial Adam learning rate", group="optimizer")
    beta1: float = _opt(0.5, "Adam beta1", group="optimizer")
    beta2: float = _opt(0.999, "Adam beta2", group="optimizer")
    n_epochs: int = _opt(100, "epochs at the initial learning rate", group="optimizer")
    n_epochs_decay: int = _opt(
        100, "epochs to decay the learning rate linearly to zero", group="optimizer"
    )
    lr_policy: str = _opt("linear", "learning rate policy", LR_POLICIES, group="optimizer")
    lr_decay_iters: int = _opt(50, "epochs between decays with --lr_policy step", group="optimizer")
    epoch_count: int = _opt(
        1,
        "first epoch number (only needed when continuing from reference-implementation files)",
        group="optimizer",
    )
    continue_train: bool = _opt(
        False, "resume <checkpoints_dir>/<name>/ from its latest state", group="optimizer"
    )
    # --- data ------------------------------------------------------------------------------
    batch_size: int = _opt(1, "images per domain per step (per worker under DDP)", group="data")
    load_size: int = _opt(286, "resize images to this size before cropping", group="data")
    crop_size: int = _opt(256, "then crop to this size", group="data")
    preprocess: str = _opt(
        "resize_and_crop", "preprocessing at load time", PREPROCESS_MODES, group="data"
    )
    no_flip: bool = _opt(False, "do not flip images horizontally for augmentation", group="data")
    serial_batches: bool = _opt(
        False, "take images in order (B paired with A by index) instead of random", group="data"
    )
    max_dataset_size: int = _opt(
        0, "use at most this many images per domain (0: all)", group="data"
    )
    direction: str = _opt(
        "AtoB", "AtoB or BtoA: BtoA swaps the two domains", DIRECTIONS, group="data"
    )
    num_threads: int = _opt(4, "data-loading worker processes", group="data")
    strict_data: bool = _opt(
        False, "fail on an unreadable image instead of skipping it with a warning", group="data"
    )
    # --- outputs ---------------------------------------------------------------------------
    save_epoch_freq: int = _opt(
        5, "also keep <epoch>_net_*.pth every this many epochs", group="output"
    )
    print_freq: int = _opt(
        100,
        "refresh progress-bar losses and the loss log every this many iterations",
        group="output",
    )
    n_samples: int = _opt(4, "images per domain in each epoch's sample grid", group="output")
    # --- evaluation ------------------------------------------------------------------------
    eval_freq: int = _opt(
        0, "evaluate on the test split every this many epochs (0: never)", group="evaluation"
    )
    eval_metrics: str = _opt(
        "l1,psnr,ssim", f"comma-separated metrics: {', '.join(EVAL_METRICS)}", group="evaluation"
    )
    inception_weights: str = _opt(
        "",
        f"InceptionV3 weights file for fid/kid ({INCEPTION_FILE}; default: ${WEIGHTS_ENV}, "
        "then torch's hub cache, then a download when online)",
        group="evaluation",
    )
    structure_weights: str = _opt(
        "",
        f"DINO ViT-B/8 weights file for dino_struct ({DINO_FILE}; default: ${DINO_WEIGHTS_ENV}, "
        "then torch's hub cache; never downloaded)",
        group="evaluation",
    )
    # --- speed -----------------------------------------------------------------------------
    precision: str = _opt(
        "auto",
        "fp32, bf16 or fp16 autocast (auto: bf16 on CUDA, fp32 on CPU)",
        PRECISIONS,
        group="speed",
    )
    channels_last: str = _opt(
        "auto",
        "channels-last memory format: true, false or auto (true on CUDA)",
        ("auto", "true", "false"),
        group="speed",
    )
    compile: str = _opt(
        "auto",
        "torch.compile the networks (auto: default on CUDA, none on CPU)",
        COMPILE_MODES,
        group="speed",
    )
    cuda_graphs: str = _opt(
        "auto",
        "capture the whole training step as CUDA graphs (auto: on CUDA at batch 1)",
        ("auto", "true", "false"),
        group="speed",
    )

    # -----------------------------------------------------------------------------------------
    def __post_init__(self) -> None:
        """Every TrainConfig is valid: built from a CLI, a manifest, a dict or `replace()`, it is
        checked here, once."""
        if problem := _option_problem(self) or size_problem(self):
            raise UserError(f"--{problem[0]}: {problem[1]}")

    @property
    def total_epochs(self) -> int:
        return self.n_epochs + self.n_epochs_decay

    def eval_metric_list(self) -> list[str]:
        return eval_metric_list(self.eval_metrics)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_record(self) -> dict[str, Any]:
        """The options as stored beside a run (config.json, latest_state.pt): credentials in URLs
        (an s3_endpoint_url with user:password@) masked. Nothing reads them back on resume: a
        resumed run gets its options, credentials included, from its caller again."""
        return {k: mask_userinfo(v) if isinstance(v, str) else v for k, v in self.to_dict().items()}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(values) - known
        if unknown:
            raise UserError(f"unknown training option(s): {', '.join(sorted(unknown))}")
        return cls(**values)

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)


def add_config_arguments(parser: argparse.ArgumentParser, skip: tuple[str, ...] = ()) -> None:
    """Add one flag per TrainConfig field, grouped, with the field's help and default."""
    groups: dict[str, argparse._ArgumentGroup] = {}
    for f in fields(TrainConfig):
        if f.name in skip:
            continue
        group_name = f.metadata.get("group", "options")
        group = groups.setdefault(group_name, parser.add_argument_group(group_name))
        help_text = f.metadata.get("help", "") + (
            f"; one of {f.metadata['names']}" if "names" in f.metadata else ""
        )
        if f.type in (bool, "bool"):
            group.add_argument(f"--{f.name}", action="store_true", help=help_text)
            if f.name == "dropout":  # the reference's spelling of the (default) off switch
                group.add_argument(
                    "--no_dropout",
                    dest="dropout",
                    action="store_false",
                    help="no dropout (the default)",
                )
        else:
            kind = {"int": int, "float": float, "str": str}.get(str(f.type), str)
            group.add_argument(
                f"--{f.name}",
                type=kind,
                default=f.default,
                choices=f.metadata.get("choices"),
                metavar=f.name.upper() if not f.metadata.get("choices") else None,
                help=f"{help_text} (default: {f.default!r})",
            )


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    return TrainConfig(
        **{f.name: getattr(args, f.name) for f in fields(TrainConfig) if hasattr(args, f.name)}
    )


def option_problem(values: dict[str, Any], sizes: bool = True) -> tuple[str, str] | None:
    """(option, why) for the first of `values` (the other options at their defaults) that
    TrainConfig refuses, else None, without building one. `sizes=False` leaves out whether the
    networks can take the image sizes, a relation between options that a manifest checks per
    combination of them."""
    options = SimpleNamespace(**{**{f.name: f.default for f in fields(TrainConfig)}, **values})
    return _option_problem(options) or (size_problem(options) if sizes else None)


def _option_problem(cfg: TrainConfig | SimpleNamespace) -> tuple[str, str] | None:
    """(option, why) for the first option that is bad on its own or against another one, sizes
    aside."""
    for f in fields(TrainConfig):
        value = getattr(cfg, f.name)
        if isinstance(value, float) and not math.isfinite(value):
            return f.name, f"must be a finite number, got {value}"
    if cfg.netG not in GENERATOR_NAMES:
        return "netG", f"unknown generator {cfg.netG!r}; use {GENERATOR_NAMES}"
    for f in fields(TrainConfig):
        choices = f.metadata.get("choices")
        if choices and getattr(cfg, f.name) not in choices:
            return f.name, f"{getattr(cfg, f.name)!r} is not one of {', '.join(choices)}"
    for name in (
        "ngf",
        "ndf",
        "batch_size",
        "crop_size",
        "load_size",
        "input_nc",
        "output_nc",
        "n_layers_D",
        "save_epoch_freq",
        "print_freq",
    ):
        if getattr(cfg, name) < 1:
            return name, "must be at least 1"
    for name in (
        "n_epochs",
        "n_epochs_decay",
        "pool_size",
        "max_dataset_size",
        "num_threads",
        "eval_freq",
        "n_samples",
    ):
        if getattr(cfg, name) < 0:
            return name, "must be 0 or more"
    for name in ("lr", "init_gain"):
        if getattr(cfg, name) <= 0:
            return name, "must be positive"
    for name in ("lambda_A", "lambda_B", "lambda_identity", "lambda_gp"):
        if getattr(cfg, name) < 0:
            return name, "must be 0 or more"
    if not (0 <= cfg.beta1 < 1 and 0 <= cfg.beta2 < 1):
        return "beta1", "Adam betas must lie in [0, 1)"
    if cfg.n_epochs + cfg.n_epochs_decay < 1:
        return "n_epochs", "n_epochs + n_epochs_decay must be at least 1"
    if problem := crop_problem(cfg):
        return problem
    if cfg.lambda_identity > 0 and cfg.input_nc != cfg.output_nc:
        return "lambda_identity", "identity loss needs input_nc == output_nc; set it to 0"
    if cfg.epoch_count < 1:
        return "epoch_count", "must be at least 1"
    unknown = set(eval_metric_list(cfg.eval_metrics)) - set(EVAL_METRICS)
    if unknown:
        return (
            "eval_metrics",
            f"unknown metric(s) {', '.join(sorted(unknown))}; use {', '.join(EVAL_METRICS)}",
        )
    return None


def crop_problem(cfg: TrainConfig | SimpleNamespace) -> tuple[str, str] | None:
    """(field, why) when the crop is larger than the image it is cut from, else None: the one rule
    between size options besides the networks' (`size_problem`)."""
    if cfg.preprocess == "resize_and_crop" and cfg.load_size < cfg.crop_size:
        return "crop_size", f"{cfg.crop_size} is larger than --load_size {cfg.load_size}"
    return None


def eval_metric_list(text: str) -> list[str]:
    return [m.strip() for m in text.split(",") if m.strip()]


# -- image sizes the networks can take -------------------------------------------------------------
def trained_sides(cfg: TrainConfig | SimpleNamespace) -> list[tuple[str, int]]:
    """(field, side) of the image sides the networks see whatever the images are (the others follow
    the data)."""
    if "crop" in cfg.preprocess:
        return [("crop_size", cfg.crop_size)]
    if (
        cfg.preprocess == "scale_width"
    ):  # widths (training, evaluation); heights follow each image's aspect ratio
        return [("load_size", cfg.load_size), ("crop_size", cfg.crop_size)]
    return []


def size_problem(cfg: TrainConfig | SimpleNamespace) -> tuple[str, str] | None:
    """(field, why) when the networks cannot take the configured image size, else None."""
    if find_generator(cfg.netG) is None or cfg.netD not in DISCRIMINATORS:
        return None  # reported as an unknown architecture
    multiple, smallest = generator_size_rule(cfg.netG)
    d_smallest = discriminator_smallest_side(cfg.netD, cfg.n_layers_D)
    for name, side in trained_sides(cfg):
        if side % multiple or side < smallest:
            below = max(smallest, side // multiple * multiple)
            near = sorted({below, max(smallest, below + multiple)} - {side})
            return name, (
                f"{side} cannot go through --netG {cfg.netG} and come back at the same size: it "
                f"needs a multiple "
                f"of {multiple} of at least {smallest} (e.g. {' or '.join(map(str, near))})"
            )
        if side < d_smallest:
            return name, (
                f"{side} is too small for --netD {cfg.netD}"
                + (f" with --n_layers_D {cfg.n_layers_D}" if cfg.netD == "n_layers" else "")
                + f": it needs at least {d_smallest}"
            )
    return None
