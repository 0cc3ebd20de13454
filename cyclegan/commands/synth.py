"""`python -m cyclegan synth`: write a synthetic domain pair with its ground truth
(cyclegan.sources.synthetic)."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    synth = subparsers.add_parser(
        "synth",
        help="write a synthetic domain pair with ground truth",
        description=(
            "Write trainA/ trainB/ testA/ testB/ and testA_gt/ testB_gt/ (true translations)."
        ),
    )
    synth.add_argument(
        "--kind",
        default="colorshift",
        help="colorshift (global colour mapping), stripes (plain <-> striped shapes) or photo "
        "(real photographs "
        "<-> the same kind of photographs with a film look, docs/photo.md)",
    )
    synth.add_argument("--out", required=True, help="output folder")
    synth.add_argument(
        "--n-train", dest="n_train", type=int, default=200, help="training images per domain"
    )
    synth.add_argument(
        "--n-test", dest="n_test", type=int, default=40, help="test images per domain"
    )
    synth.add_argument("--size", type=int, default=64, help="image side in pixels")
    synth.add_argument("--seed", type=int, default=0, help="random seed")
    synth.add_argument("--debug", action="store_true", help="show full tracebacks")
    synth.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from ..sources.synthetic import ORIGIN_FILE, generate

    out = generate(args.kind, args.out, args.n_train, args.n_test, args.size, args.seed)
    print(
        f"wrote a synthetic '{args.kind}' dataset to {out} (trainA trainB testA testB testA_gt "
        f"testB_gt; {ORIGIN_FILE})"
    )
    return 0
