"""`python -m cyclegan COMMAND ...`: train, translate, synth (and the data, evaluate, bench commands)."""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path

from .config import add_config_arguments, config_from_args
from .errors import UserError, dispatch, run_cli
from .reference_flags import add_train_flags

log = logging.getLogger("cyclegan")


def _train(args: argparse.Namespace) -> int:
    import torch

    from .reference_flags import apply_train_flags, describe_networks
    from .trainer import Trainer

    for note in apply_train_flags(args, torch.cuda.is_available()):
        print(f"note: {note}")
    cfg = config_from_args(args)
    trainer = Trainer(cfg)
    if args.verbose:
        print(describe_networks(trainer.model.nets))
    metrics = trainer.fit()
    out = trainer.out_dir
    print(f"done: {cfg.name}, {cfg.total_epochs} epochs")
    print(f"  checkpoints:  {out}/latest_net_G_A.pth (and G_B, D_A, D_B; full state in {out}/latest_state.pt)")
    if cfg.n_samples:
        print(f"  sample grids: {out}/samples/index.html")
    print(f"  loss log:     {out}/loss_log.txt, per-epoch metrics in {out}/metrics.jsonl")
    if metrics:
        print("  last epoch:   " + ", ".join(f"{k}={metrics[k]:.4g}" for k in ("loss_G", "loss_D_A", "loss_D_B", "pairs_per_s")))
    return 0


def _translate(args: argparse.Namespace) -> int:
    from .checkpoint import load_generator
    from .model import resolve_device
    from .networks import size_multiple
    from .translate import translate_folder

    net = load_generator(args.checkpoint, netG=args.netG, ngf=args.ngf, norm=args.norm, input_nc=args.input_nc,
                         output_nc=args.output_nc, device=resolve_device(args.device))
    written = translate_folder(net, Path(args.input), Path(args.output), size_multiple(net.netG),
                               args.preprocess, args.load_size)
    print(f"wrote {len(written)} translated image(s) to {args.output}")
    return 0


def _synth(args: argparse.Namespace) -> int:
    from .synthetic import ORIGIN_FILE, generate

    out = generate(args.kind, args.out, args.n_train, args.n_test, args.size, args.seed)
    print(f"wrote a synthetic '{args.kind}' dataset to {out} (trainA trainB testA testB testA_gt testB_gt; {ORIGIN_FILE})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m cyclegan", description="CycleGAN (Zhu et al., ICCV 2017) on one machine.")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks and debug logs")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    train = commands.add_parser("train", help="train a CycleGAN on a dataset with trainA/ trainB/",
                                description="Train a CycleGAN. Defaults are the paper's; flags are the reference implementation's.")
    train.add_argument("--debug", action="store_true", help="show full tracebacks and debug logs")
    add_config_arguments(train)
    add_train_flags(train)
    train.set_defaults(run=_train)

    translate = commands.add_parser("translate", help="translate a folder of images with a trained generator",
                                    description="Translate images with a generator checkpoint (this project's or the reference's).")
    translate.add_argument("--checkpoint", required=True,
                           help="a *_net_G_A.pth / *_net_G_B.pth file (or latest_state.pt: G_A); the reference's and other "
                                "implementations' ResNet generators (affine instance norm, blocks named `block`) load too")
    translate.add_argument("--input", required=True, help="an image or a folder of images")
    translate.add_argument("--output", required=True, help="folder for the translated images (same file names)")
    translate.add_argument("--netG", default=None, help="generator architecture (default: inferred from the checkpoint)")
    translate.add_argument("--ngf", type=int, default=None, help="generator width (default: inferred)")
    translate.add_argument("--norm", default=None, choices=("instance", "instance_affine", "batch", "none"),
                           help="normalization (default: inferred); instance_affine: instance norm with a learned scale and shift")
    translate.add_argument("--input_nc", type=int, default=None, help="channels of the input images (default: inferred, else 3)")
    translate.add_argument("--output_nc", type=int, default=None, help="channels of the output images (default: inferred, else 3)")
    translate.add_argument("--preprocess", default="none", choices=("none", "scale_width"),
                           help="none: translate at the input's size (rounded to what the network needs); "
                                "scale_width: first scale to --load_size wide")
    translate.add_argument("--load_size", type=int, default=None, help="width for --preprocess scale_width")
    translate.add_argument("--device", default="auto", help="cpu, cuda or auto")
    translate.add_argument("--debug", action="store_true", help="show full tracebacks")
    translate.set_defaults(run=_translate)

    from .synthetic import KINDS

    synth = commands.add_parser("synth", help="write a synthetic domain pair with ground truth",
                                description="Write trainA/ trainB/ testA/ testB/ and testA_gt/ testB_gt/ (true translations).")
    synth.add_argument("--kind", default="colorshift",
                       help="; ".join(f"{name}: {kind.about}" for name, kind in KINDS.items()))
    synth.add_argument("--out", required=True, help="output folder")
    synth.add_argument("--n-train", dest="n_train", type=int, default=200, help="training images per domain")
    synth.add_argument("--n-test", dest="n_test", type=int, default=40, help="test images per domain")
    synth.add_argument("--size", type=int, default=64, help="image side in pixels")
    synth.add_argument("--seed", type=int, default=0, help="random seed")
    synth.add_argument("--debug", action="store_true", help="show full tracebacks")
    synth.set_defaults(run=_synth)

    for register in _extra_commands():
        register(commands)
    return parser


def _extra_commands():
    """Commands that live in their own modules (each has `register(subparsers)`)."""
    from . import bench, data_cli, evaluate, results_page

    return [evaluate.register, data_cli.register, bench.register, results_page.register]


def main(argv: list[str] | None = None) -> int:
    return dispatch(build_parser(), argv)


def entry_point() -> int:
    from .threads import configure_cpu_threads

    configure_cpu_threads()  # before torch is imported
    return run_cli(main)


def dump_json(data, path: str | None) -> None:
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(data, indent=2, default=str))


__all__ = ["main", "entry_point", "build_parser", "dump_json", "UserError"]
