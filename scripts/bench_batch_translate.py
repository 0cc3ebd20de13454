"""Batch translation: `python -m orchestrator translate` (a Ray Data job) against
`python -m cyclegan translate` (one process) on the same images, in the same run.

    python scripts/bench_batch_translate.py --images 400,2400 --size 32
    python scripts/bench_batch_translate.py --images 1000,20000 --size 256 --gpus-per-worker 1

A generator with random weights (the paper's by default) is registered in a throw-away sqlite
MLflow; the images are random RGB of `--size` px a side (about a third of them a few pixels off, so
that exact sizes are exercised). Each command runs as its own process, as a user runs it; the
orchestrator's wall time includes Ray's start-up (a private local Ray) and the workers' model load,
which the job's streaming images/s (from `_translation.json`: from its first result on) does not.
With two sizes (`--images SMALL,LARGE`) it also gives each command's cost per added image and its
fixed cost, the line through the two wall times: the job's start-up apart, is it slower per image?
Figures and the machines they were taken on: docs/PERFORMANCE.md ("Batch translation").
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from mlflow import MlflowClient
from PIL import Image

from cyclegan.checkpoint import save_networks
from cyclegan.config import TrainConfig
from cyclegan.networks import define_networks
from orchestrator.tracking.registry import Candidate, register_best


def register(root: Path, args: argparse.Namespace) -> str:
    uri = f"sqlite:///{root}/mlflow.db"
    cfg = TrainConfig(
        dataroot=str(root), checkpoints_dir=str(root), netG=args.netG, ngf=args.ngf, ndf=8
    )
    torch.manual_seed(0)
    nets = define_networks(cfg)
    save_networks(root, "latest", {k: v for k, v in nets.items() if k.startswith("G")})
    client = MlflowClient(uri)
    run = client.create_run(client.create_experiment("bench")).info.run_id
    client.set_terminated(run)
    candidate = Candidate(
        "bench", run, "psnr", 1.0, "max", config=cfg.to_dict(), checkpoint_dir=root
    )
    register_best(uri, candidate, promote="always")
    return uri


def make_images(folder: Path, count: int, size: int) -> None:
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True)
    for i in range(count):
        width = size + (int(rng.integers(-3, 4)) if i % 3 == 0 else 0)
        pixels = rng.integers(0, 256, (size, max(8, width), 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"img{i:05d}.png")


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"{' '.join(command[:4])} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    return time.perf_counter() - start


def measure(root: Path, uri: str, count: int, args: argparse.Namespace) -> dict:
    """Both commands on the same `count` images, one after the other."""
    images, python = root / f"in-{count}", sys.executable
    make_images(images, count, args.size)
    single = timed(
        [python, "-m", "cyclegan", "translate", "--checkpoint", str(root / "latest_net_G_A.pth")]
        + ["--input", str(images), "--output", str(root / f"single-{count}")]
    )
    output = root / f"job-{count}"
    job = timed(
        [python, "-m", "orchestrator", "translate", "--model", "models:/cyclegan-bench/1"]
        + ["--input", str(images), "--output", str(output), "--tracking-uri", uri]
        + ["--workers", args.workers, "--gpus-per-worker", args.gpus_per_worker]
        + ["--batch-size", args.batch_size]
    )
    report = json.loads((output / "_translation.json").read_text())
    return {
        "images": count,
        "cyclegan_translate": {
            "wall_s": round(single, 2),
            "images_per_s": round(count / single, 2),
        },
        "orchestrator_translate": {
            "wall_s": round(job, 2),
            "images_per_s": round(count / job, 2),
            "streaming_images_per_s": report["throughput"]["streaming_images_per_s"],
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", default="400,2400", help="one count, or SMALL,LARGE")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--netG", default="resnet_9blocks")
    parser.add_argument("--ngf", type=int, default=64)
    parser.add_argument("--workers", default="1")
    parser.add_argument("--gpus-per-worker", default="0")
    parser.add_argument("--batch-size", default="16")
    args = parser.parse_args()
    counts = [int(n) for n in args.images.split(",")]
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp:
        root = Path(tmp)
        uri = register(root, args)
        runs = [measure(root, uri, count, args) for count in counts]
    result = {
        "size": args.size,
        "netG": args.netG,
        "ngf": args.ngf,
        "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
        "runs": runs,
    }
    if len(runs) == 2:  # the line through the two points: cost per added image, fixed cost
        small, large = runs
        added = large["images"] - small["images"]
        for command in ("cyclegan_translate", "orchestrator_translate"):
            per_image = (large[command]["wall_s"] - small[command]["wall_s"]) / added
            fixed = small[command]["wall_s"] - per_image * small["images"]
            result[command] = {
                "ms_per_image": round(1000 * per_image, 2),
                "fixed_s": round(fixed, 2),
            }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
