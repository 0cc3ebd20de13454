"""Batch translation: `python -m orchestrator translate` (a Ray Data job) against
`python -m cyclegan translate` (one process) on the same images, in the same run.

    python scripts/bench_batch_translate.py --images 2000 --size 64 --netG resnet_9blocks --ngf 64
    python scripts/bench_batch_translate.py --images 20000 --size 256 --gpus-per-worker 1

A generator with random weights (the paper's by default) is registered in a throw-away sqlite
MLflow; the images are random RGB of `--size` px a side (about a third of them a few pixels off, so
that exact sizes are exercised). Each command runs as its own process, as a user runs it; the
orchestrator's wall time includes Ray's start-up (a private local Ray) and the workers' model load,
which the job's streaming images/s (from `_translation.json`: from its first result on) does not.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--netG", default="resnet_9blocks")
    parser.add_argument("--ngf", type=int, default=64)
    parser.add_argument("--workers", default="1")
    parser.add_argument("--gpus-per-worker", default="0")
    parser.add_argument("--batch-size", default="16")
    args = parser.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp:
        root = Path(tmp)
        uri = register(root, args)
        make_images(root / "in", args.images, args.size)
        python = sys.executable
        single = timed(
            [
                python,
                "-m",
                "cyclegan",
                "translate",
                "--checkpoint",
                str(root / "latest_net_G_A.pth"),
            ]
            + ["--input", str(root / "in"), "--output", str(root / "single")]
        )
        job = timed(
            [python, "-m", "orchestrator", "translate", "--model", "models:/cyclegan-bench/1"]
            + ["--input", str(root / "in"), "--output", str(root / "job"), "--tracking-uri", uri]
            + ["--workers", args.workers, "--gpus-per-worker", args.gpus_per_worker]
            + ["--batch-size", args.batch_size]
        )
        report = json.loads((root / "job" / "_translation.json").read_text())
    n = args.images
    print(
        json.dumps(
            {
                "images": n,
                "size": args.size,
                "netG": args.netG,
                "ngf": args.ngf,
                "device": torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu",
                "cyclegan_translate": {
                    "wall_s": round(single, 2),
                    "images_per_s": round(n / single, 2),
                },
                "orchestrator_translate": {
                    "wall_s": round(job, 2),
                    "images_per_s": round(n / job, 2),
                    "job_images_per_s": report["throughput"]["images_per_s"],
                    "streaming_images_per_s": report["throughput"]["streaming_images_per_s"],
                },
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
