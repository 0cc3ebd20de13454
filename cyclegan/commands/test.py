"""`python -m cyclegan test`: the reference's test.py, with its flags and its results page.

`--model test` (one side): every image under --dataroot through `<epoch>_net_G<model_suffix>.pth`;
`--model cycle_gan` (both sides): <dataroot>/<phase>A and <phase>B through G_A and G_B, with the
reconstructions. Written as the reference writes them:
`<results_dir>/<name>/<phase>_<epoch>/index.html` and `images/<image name>_<label>.png` (labels
real, fake; or real_A, fake_B, rec_A, real_B, fake_A, rec_B).
"""

from __future__ import annotations

import argparse
import html
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image

from ..architectures import GENERATOR_NAMES, LOADED_NORMS
from ..config import PREPROCESS_MODES
from ..errors import UserError
from ..metric_names import DIRECTIONS
from ..run_files import LATEST, network_file
from .reference_flags import add_common_flags, apply_common_flags

if TYPE_CHECKING:  # torch loads when the command runs, not for --help
    import torch

_UNUSED_AT_TEST = {  # the reference's shared options that change nothing when testing
    "batch_size": int,
    "num_threads": int,
    "max_dataset_size": int,
    "init_type": str,
    "init_gain": float,
    "ndf": int,
    "netD": str,
    "n_layers_D": int,
}


def register(subparsers) -> None:
    test = subparsers.add_parser(
        "test",
        help=(
            "the reference's test.py: translate test images and write "
            "results/<name>/<phase>_<epoch>/index.html"
        ),
        description="Translate test images with trained generators and write the reference's "
        "results page. "
        "Example: python -m cyclegan test --dataroot datasets/horse2zebra/testA --name horse2zebra "
        "--model test "
        "--model_suffix _A --no_dropout",
    )
    test.add_argument(
        "--dataroot",
        required=True,
        help="--model test: a folder of images (e.g. datasets/horse2zebra/testA); "
        "--model cycle_gan: a dataset with <phase>A/ and <phase>B/",
    )
    test.add_argument(
        "--name",
        default="experiment_name",
        help="experiment name: generators are read from <checkpoints_dir>/<name>/",
    )
    test.add_argument(
        "--checkpoints_dir", default="./checkpoints", help="where experiments are stored"
    )
    test.add_argument(
        "--results_dir",
        default="./results/",
        help="the page goes to <results_dir>/<name>/<phase>_<epoch>/",
    )
    test.add_argument(
        "--model",
        default="test",
        choices=("test", "cycle_gan"),
        help=(
            "test: one generator, one side (<epoch>_net_G<model_suffix>.pth); cycle_gan: both "
            "generators and both sides"
        ),
    )
    test.add_argument(
        "--model_suffix",
        default="",
        help="with --model test: which generator, e.g. _A reads <epoch>_net_G_A.pth",
    )
    test.add_argument(
        "--phase",
        default="test",
        help="with --model cycle_gan: read <dataroot>/<phase>A and <phase>B",
    )
    test.add_argument(
        "--epoch",
        default=LATEST,
        help="which checkpoint: latest or an epoch number (<epoch>_net_G_*.pth)",
    )
    test.add_argument("--num_test", type=int, default=50, help="how many test images to translate")
    test.add_argument(
        "--eval",
        action="store_true",
        help="run the generators in eval mode (matters for batch norm and dropout only)",
    )
    test.add_argument(
        "--aspect_ratio",
        type=float,
        default=1.0,
        help="aspect ratio of the saved images (>1 wider, <1 taller)",
    )
    test.add_argument(
        "--display_winsize", type=int, default=256, help="width of each image on the results page"
    )
    test.add_argument(
        "--direction",
        default="AtoB",
        choices=DIRECTIONS,
        help=(
            "with --model cycle_gan, BtoA swaps the domain folders (as in training with "
            "--direction BtoA)"
        ),
    )
    test.add_argument(
        "--dataset_mode",
        default=None,
        choices=("single", "unaligned"),
        help=(
            "accepted: single for --model test, unaligned for --model cycle_gan (implied by "
            "--model)"
        ),
    )
    test.add_argument(
        "--preprocess",
        default="resize_and_crop",
        choices=PREPROCESS_MODES,
        help=(
            "as in training: resize_and_crop/crop center-crop to --crop_size, scale_width keeps "
            "the aspect, none keeps the size"
        ),
    )
    test.add_argument(
        "--load_size",
        type=int,
        default=256,
        help="resize to this size first (default: the crop size, so nothing is cropped)",
    )
    test.add_argument("--crop_size", type=int, default=256, help="then crop to this size")
    test.add_argument(
        "--netG",
        default=None,
        help=(
            f"generator architecture, one of {GENERATOR_NAMES} (default: inferred from the "
            f"checkpoint)"
        ),
    )
    test.add_argument("--ngf", type=int, default=None, help="generator width (default: inferred)")
    test.add_argument(
        "--norm", default=None, choices=LOADED_NORMS, help="normalization (default: inferred)"
    )
    test.add_argument(
        "--input_nc", type=int, default=None, help="input channels (default: inferred)"
    )
    test.add_argument(
        "--output_nc", type=int, default=None, help="output channels (default: inferred)"
    )
    test.add_argument(
        "--no_dropout", action="store_true", help="accepted: no dropout is the default here"
    )
    test.add_argument(
        "--serial_batches",
        action="store_true",
        help="accepted: test images are always taken in order",
    )
    test.add_argument(
        "--no_flip", action="store_true", help="accepted: test images are never flipped"
    )
    test.add_argument("--device", default="auto", help="cpu, cuda or auto")
    test.add_argument("--debug", action="store_true", help="show full tracebacks")
    group = add_common_flags(test)
    for name, kind in _UNUSED_AT_TEST.items():
        group.add_argument(
            f"--{name}",
            type=kind,
            default=None,
            metavar=name.upper(),
            help="accepted; not used when testing",
        )
    test.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from ..model import resolve_device

    for note in apply_common_flags(args, torch.cuda.is_available()):
        print(f"note: {note}")
    if args.num_test < 1:
        raise UserError("--num_test: must be at least 1")
    if args.aspect_ratio <= 0:
        raise UserError("--aspect_ratio: must be positive")
    device = resolve_device(args.device)
    folder = Path(args.checkpoints_dir) / args.name
    if args.model == "test":
        nets = {
            "G": _load(folder / network_file(args.epoch, f"G{args.model_suffix}"), args, device)
        }
        rows = [
            (path, _one_side(nets["G"], path, args))
            for path in _images(Path(args.dataroot))[: args.num_test]
        ]
    else:
        # As in the reference, BtoA swaps the folders, not the networks: a model trained BtoA has
        # G_A mapping B to A.
        a, b = ("A", "B") if args.direction == "AtoB" else ("B", "A")
        G_A, G_B = (
            _load(folder / network_file(args.epoch, name), args, device) for name in ("G_A", "G_B")
        )
        paths_A = _images(Path(args.dataroot) / f"{args.phase}{a}")[: args.num_test]
        paths_B = _images(Path(args.dataroot) / f"{args.phase}{b}")
        rows = [
            (path, _both_sides(G_A, G_B, path, paths_B[i % len(paths_B)], args))
            for i, path in enumerate(paths_A)
        ]
    if args.verbose:
        from .reference_flags import describe_networks

        print(describe_networks(nets if args.model == "test" else {"G_A": G_A, "G_B": G_B}))
    page = write_results_page(
        rows,
        Path(args.results_dir) / args.name / f"{args.phase}_{args.epoch}",
        f"Experiment = {args.name}, Phase = {args.phase}, Epoch = {args.epoch}",
        args.aspect_ratio,
        args.display_winsize,
    )
    print(f"wrote {len(rows)} result(s) to {page}")
    return 0


def _images(folder: Path) -> list[Path]:
    from ..translate import list_inputs

    if not folder.is_dir():
        raise UserError(f"{folder}: folder not found")
    return list_inputs(folder)


def _load(path: Path, args: argparse.Namespace, device: torch.device) -> torch.nn.Module:
    from ..checkpoint import load_generator

    if not path.is_file():
        found = (
            sorted(p.name for p in path.parent.glob("*_net_G*.pth")) if path.parent.is_dir() else []
        )
        hint = f"; found {', '.join(found[:6])} (--epoch, --model_suffix)" if found else ""
        raise UserError(f"{path}: generator checkpoint not found{hint}")
    net = load_generator(
        path,
        netG=args.netG,
        ngf=args.ngf,
        norm=args.norm,
        input_nc=args.input_nc,
        output_nc=args.output_nc,
        device=device,
    )
    return net.train(not args.eval)  # the reference runs in train mode unless --eval


def prepare(img: Image.Image, args: argparse.Namespace, multiple: int) -> Image.Image:
    """The test-time preprocessing: as in training, without randomness (centre crop, no flip),
    then rounded to the size the generator needs."""
    from ..translate import network_size

    mode, load, crop = args.preprocess, args.load_size, args.crop_size
    if mode == "resize_and_crop":
        img = img.resize((load, load), Image.BICUBIC)
    elif mode.startswith("scale_width"):
        img = img.resize((load, max(1, round(load * img.height / img.width))), Image.BICUBIC)
    if mode in ("resize_and_crop", "crop", "scale_width_and_crop"):
        left, top = max(0, (img.width - crop) // 2), max(0, (img.height - crop) // 2)
        img = img.crop((left, top, left + min(crop, img.width), top + min(crop, img.height)))
    size = network_size(*img.size, multiple)
    return img if size == img.size else img.resize(size, Image.BICUBIC)


def _run(net: torch.nn.Module, img: Image.Image) -> Image.Image:
    import torch

    from ..translate import to_image, to_tensor

    with torch.no_grad():
        return to_image(net(to_tensor(img)[None].to(next(net.parameters()).device))[0])


def _input(net: torch.nn.Module, path: Path, args: argparse.Namespace) -> Image.Image:
    from ..data import load_image
    from ..networks import size_multiple

    return prepare(load_image(path, next(net.parameters()).shape[1]), args, size_multiple(net.netG))


def _one_side(G: torch.nn.Module, path: Path, args: argparse.Namespace) -> dict[str, Image.Image]:
    real = _input(G, path, args)
    return {"real": real, "fake": _run(G, real)}


def _both_sides(
    G_A: torch.nn.Module, G_B: torch.nn.Module, path_A: Path, path_B: Path, args: argparse.Namespace
) -> dict[str, Image.Image]:
    real_A, real_B = _input(G_A, path_A, args), _input(G_B, path_B, args)
    fake_B, fake_A = _run(G_A, real_A), _run(G_B, real_B)
    return {
        "real_A": real_A,
        "fake_B": fake_B,
        "rec_A": _run(G_B, fake_B),
        "real_B": real_B,
        "fake_A": fake_A,
        "rec_B": _run(G_A, fake_A),
    }


def write_results_page(
    rows: list[tuple[Path, dict[str, Image.Image]]],
    web_dir: Path,
    title: str,
    aspect_ratio: float = 1.0,
    width: int = 256,
) -> Path:
    """images/<image name>_<label>.png for each row, and index.html showing them, one row per input
    image."""
    from tqdm.auto import tqdm

    images = web_dir / "images"
    images.mkdir(parents=True, exist_ok=True)
    body = [f"<h1>{html.escape(title)}</h1>"]
    for path, visuals in tqdm(rows, desc="saving", unit="img", disable=len(rows) < 20):
        cells = []
        for label, img in visuals.items():
            name = f"{path.stem}_{label}.png"
            w, h = img.size
            if aspect_ratio > 1:
                img = img.resize((round(w * aspect_ratio), h), Image.BICUBIC)
            elif aspect_ratio < 1:
                img = img.resize((w, round(h / aspect_ratio)), Image.BICUBIC)
            img.save(images / name)
            src = f"images/{html.escape(name)}"
            cells.append(
                f'<td style="text-align:center"><a href="{src}"><img src="{src}" '
                f'style="width:{width}px"></a>'
                f"<br><p>{html.escape(label)}</p></td>"
            )
        body.append(f"<h3>{html.escape(path.stem)}</h3>\n<table><tr>{''.join(cells)}</tr></table>")
    page = web_dir / "index.html"
    page.write_text(
        f"<!DOCTYPE html>\n<html><head><meta "
        f"charset='utf-8'><title>{html.escape(title)}</title></head>\n<body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )
    return page
