"""`python -m cyclegan translate`: translate an image or a folder of images with a generator
checkpoint."""

from __future__ import annotations

import argparse
from pathlib import Path

from ..architectures import GENERATOR_NAMES, LOADED_NORMS


def register(subparsers) -> None:
    translate = subparsers.add_parser(
        "translate",
        help="translate a folder of images with a trained generator",
        description=(
            "Translate images with a generator checkpoint (this project's or the reference's)."
        ),
    )
    translate.add_argument(
        "--checkpoint",
        required=True,
        help="a *_net_G_A.pth / *_net_G_B.pth file (or latest_state.pt: G_A); the reference's and "
        "other "
        "implementations' ResNet generators (affine instance norm, blocks named `block`) load too",
    )
    translate.add_argument("--input", required=True, help="an image or a folder of images")
    translate.add_argument(
        "--output", required=True, help="folder for the translated images (same file names)"
    )
    translate.add_argument(
        "--netG",
        default=None,
        help=(
            f"generator architecture, one of {GENERATOR_NAMES} (default: inferred from the "
            f"checkpoint)"
        ),
    )
    translate.add_argument(
        "--ngf", type=int, default=None, help="generator width (default: inferred)"
    )
    translate.add_argument(
        "--norm",
        default=None,
        choices=LOADED_NORMS,
        help=(
            "normalization (default: inferred); instance_affine: instance norm with a learned "
            "scale and shift"
        ),
    )
    translate.add_argument(
        "--input_nc",
        type=int,
        default=None,
        help="channels of the input images (default: inferred, else 3)",
    )
    translate.add_argument(
        "--output_nc",
        type=int,
        default=None,
        help="channels of the output images (default: inferred, else 3)",
    )
    translate.add_argument(
        "--preprocess",
        default="none",
        choices=("none", "scale_width"),
        help="none: translate at the input's exact size (padded to what the network needs, then "
        "cropped back); "
        "scale_width: first scale to --load_size wide",
    )
    translate.add_argument(
        "--load_size", type=int, default=None, help="width for --preprocess scale_width"
    )
    translate.add_argument("--device", default="auto", help="cpu, cuda or auto")
    translate.add_argument("--debug", action="store_true", help="show full tracebacks")
    translate.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..checkpoint import load_generator
    from ..model import resolve_device
    from ..networks import size_multiple
    from ..translate import translate_folder

    net = load_generator(
        args.checkpoint,
        netG=args.netG,
        ngf=args.ngf,
        norm=args.norm,
        input_nc=args.input_nc,
        output_nc=args.output_nc,
        device=resolve_device(args.device),
    )
    written = translate_folder(
        net,
        Path(args.input),
        Path(args.output),
        size_multiple(net.netG),
        args.preprocess,
        args.load_size,
    )
    print(f"wrote {len(written)} translated image(s) to {args.output}")
    return 0
