"""The reference implementation's command-line flags that have no TrainConfig field.

Users of junyanz/pytorch-CycleGAN-and-pix2pix bring their command lines along. Each of its flags
is accepted here: it either does what it did there (`--gpu_ids -1` trains on the CPU, `--suffix`
extends the name, `--no_html` writes no sample pages, `--niter` is `--n_epochs`), or it prints
one line saying why it changes nothing here (there is no visdom: the samples are in a folder).
Values this project cannot honour (`--model pix2pix`) are refused with a message.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from ..errors import UserError
from ..run_files import LATEST

GROUP = "reference implementation flags (accepted for compatibility; see each flag)"

# flag -> (type, help); `None` type: a switch. Each is explained by `train_notes` when given.
_DISPLAY = (
    "visdom display option of the reference: there is no visdom here, sample grids are written "
    "instead"
)
_TRAIN_ONLY_NOTES = {
    "display_freq": (int, _DISPLAY),
    "display_ncols": (int, _DISPLAY),
    "display_id": (int, _DISPLAY),
    "display_server": (str, _DISPLAY),
    "display_env": (str, _DISPLAY),
    "display_port": (int, _DISPLAY),
    "display_winsize": (
        int,
        "image width on the reference's web page; the sample grids here are at the crop size",
    ),
    "update_html_freq": (
        int,
        "iterations between the reference's web-page updates; the grids here are written every "
        "epoch",
    ),
    "save_latest_freq": (
        int,
        "iterations between the reference's latest_* saves; here latest_* and latest_state.pt are "
        "saved every epoch",
    ),
    "save_by_iter": (
        None,
        "the reference's iteration-numbered saves; checkpoints here are per epoch "
        "(<epoch>_net_*.pth, --save_epoch_freq)",
    ),
    "use_wandb": (
        None,
        "Weights & Biases logging in the reference; here: metrics.jsonl and loss_log.txt, or "
        "MLflow via python -m orchestrator",
    ),
    "wandb_project_name": (
        str,
        "the reference's W&B project; there is no W&B logging here (see --use_wandb)",
    ),
}


def add_common_flags(
    parser: argparse.ArgumentParser, group: argparse._ArgumentGroup | None = None
) -> argparse._ArgumentGroup:
    """Flags the reference's train.py and test.py share."""
    group = group or parser.add_argument_group(GROUP)
    group.add_argument(
        "--gpu_ids",
        default=None,
        metavar="IDS",
        help="the reference's GPU choice: -1 for the CPU, N for cuda:N; several ids train on the "
        "first "
        "(multi-GPU training: python -m orchestrator train --workers N --gpus-per-worker 1)",
    )
    group.add_argument(
        "--suffix",
        default=None,
        help=(
            "appended to --name as <name>_<suffix>; may use other options, e.g. "
            "{netG}_size{load_size}"
        ),
    )
    group.add_argument(
        "--verbose", action="store_true", help="print the networks and their parameter counts"
    )
    group.add_argument(
        "--load_iter",
        type=int,
        default=None,
        help=(
            "the reference's iteration-numbered checkpoints: 0 only (checkpoints here are per "
            "epoch)"
        ),
    )
    return group


def add_train_flags(parser: argparse.ArgumentParser) -> None:
    group = add_common_flags(parser)
    group.add_argument(
        "--model",
        default=None,
        help=(
            "cycle_gan (the only model trained here; for test.py's --model test use python -m "
            "cyclegan test)"
        ),
    )
    group.add_argument(
        "--dataset_mode",
        default=None,
        help="unaligned (the only mode trained here: trainA/ and trainB/)",
    )
    group.add_argument(
        "--phase", default=None, help="train: training reads <dataroot>/trainA and trainB"
    )
    group.add_argument(
        "--epoch",
        default=None,
        help="with --continue_train the reference loads <epoch>_net_*.pth; here it resumes from "
        "latest_state.pt, so only 'latest'",
    )
    group.add_argument(
        "--no_html",
        action="store_true",
        help="write no sample grids and no samples/index.html (the reference's web/ pages)",
    )
    group.add_argument(
        "--niter",
        dest="n_epochs",
        type=int,
        default=argparse.SUPPRESS,
        help="the reference's older name of --n_epochs",
    )
    group.add_argument(
        "--niter_decay",
        dest="n_epochs_decay",
        type=int,
        default=argparse.SUPPRESS,
        help="the reference's older name of --n_epochs_decay",
    )
    for name, (kind, why) in _TRAIN_ONLY_NOTES.items():
        if kind is None:
            group.add_argument(
                f"--{name}", action="store_true", default=None, help=f"accepted; {why}"
            )
        else:
            group.add_argument(
                f"--{name}", type=kind, default=None, metavar=name.upper(), help=f"accepted; {why}"
            )


def device_from_gpu_ids(gpu_ids: str, cuda_available: bool) -> tuple[str, str | None]:
    """The --device for the reference's --gpu_ids, and a note when it is not exactly what was
    asked."""
    try:
        ids = [int(part) for part in gpu_ids.split(",") if part.strip()]
    except ValueError:
        raise UserError(
            f"--gpu_ids {gpu_ids!r}: use -1 for the CPU, or GPU numbers such as 0 or 0,1"
        ) from None
    ids = [i for i in ids if i >= 0]
    if not ids:
        return "cpu", None
    if not cuda_available:
        return "cpu", f"--gpu_ids {gpu_ids}: no CUDA device on this machine; running on the CPU"
    if len(ids) > 1:
        return f"cuda:{ids[0]}", (
            f"--gpu_ids {gpu_ids}: one process uses one GPU (cuda:{ids[0]}); for data-parallel "
            f"training on "
            f"{len(ids)} GPUs run python -m orchestrator train --workers {len(ids)} "
            f"--gpus-per-worker 1"
        )
    return f"cuda:{ids[0]}", None


def apply_common_flags(args: argparse.Namespace, cuda_available: bool) -> list[str]:
    """Turn the shared reference flags into this project's options (in place); returns notes to
    print."""
    notes = []
    if args.gpu_ids is not None:
        args.device, note = device_from_gpu_ids(args.gpu_ids, cuda_available)
        notes += [note] if note else []
    if args.load_iter:
        raise UserError(
            f"--load_iter {args.load_iter}: checkpoints here are per epoch; use --epoch N (or "
            f"latest)"
        )
    if args.suffix:
        try:
            args.name = f"{args.name}_{args.suffix.format(**vars(args))}"
        except (KeyError, IndexError, ValueError) as err:
            raise UserError(
                f"--suffix {args.suffix!r}: {err.__class__.__name__} {err}; use option names, e.g. "
                f"{{netG}}_size{{load_size}}"
            ) from None
    return notes


def apply_train_flags(args: argparse.Namespace, cuda_available: bool) -> list[str]:
    """Check and apply the reference's train.py flags (in place); returns one note per flag that
    changes nothing here."""
    for flag, allowed, why in (
        (
            "model",
            "cycle_gan",
            "only CycleGAN is trained here (one-sided results: python -m cyclegan test --model "
            "test)",
        ),
        ("dataset_mode", "unaligned", "training reads unaligned pairs from trainA/ and trainB/"),
        ("phase", "train", "training reads <dataroot>/trainA and trainB"),
    ):
        value = getattr(args, flag)
        if value is not None and value != allowed:
            raise UserError(f"--{flag} {value}: {why}; use --{flag} {allowed}")
    if args.epoch not in (None, LATEST):
        raise UserError(
            f"--epoch {args.epoch}: --continue_train resumes from latest_state.pt (the latest "
            f"epoch); to start from "
            f"{args.epoch}_net_*.pth, copy them to latest_net_*.pth in a new --name and continue "
            f"that"
        )
    notes = apply_common_flags(args, cuda_available)
    if args.no_html:
        args.n_samples = 0
    samples = Path(args.checkpoints_dir) / args.name / "samples"
    given: dict[str, list[str]] = {}  # one line per explanation, naming every flag it covers
    for name, (_, why) in _TRAIN_ONLY_NOTES.items():
        if getattr(args, name) is not None:
            given.setdefault(why, []).append(f"--{name}")
    for why, flags in given.items():
        where = f" ({samples}/)" if why == _DISPLAY else ""
        notes.append(f"{', '.join(flags)}: {why}{where}")
    return notes


def describe_networks(nets: dict) -> str:
    """Each network and its parameter count, as the reference prints them with --verbose."""
    from ..networks import count_parameters

    lines = []
    for name, net in nets.items():
        lines += [
            str(net),
            f"[Network {name}] Total number of parameters : {count_parameters(net) / 1e6:.3f} M",
        ]
    return "\n".join(lines)
