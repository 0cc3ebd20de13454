"""A registered champion evaluated again under a challenger's protocol, in a Ray task: the driver
loads neither torch nor the dataset. Returns the evidence file's bytes (cyclegan.scores), which
the promotion rule compares image by image with the challenger's."""

from __future__ import annotations

import tempfile
from pathlib import Path


def evaluate_generators(config: dict, generators: dict[str, bytes], architecture: dict) -> bytes:
    """Evaluate G_A/G_B (`generators`: file bytes, built as `architecture` says: netG, ngf, norm,
    channels) on the test split of `config`'s dataset, with `config`'s protocol."""
    import torch

    from cyclegan.checkpoint import load_generator
    from cyclegan.commands.evaluate import generator_translator
    from cyclegan.config import TrainConfig
    from cyclegan.evaluate import Evaluator
    from cyclegan.sources import resolve_dataset

    cfg = TrainConfig.from_dict(config)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    root = resolve_dataset(
        cfg.dataroot,
        cfg.cache_dir or None,
        endpoint_url=cfg.s3_endpoint_url or None,
        show_progress=False,
    )
    with tempfile.TemporaryDirectory(prefix="cyclegan-reevaluate-") as tmp:
        nets = {}
        for name, data in generators.items():
            (Path(tmp) / name).write_bytes(data)
            in_nc, out_nc = (architecture["input_nc"], architecture["output_nc"])
            nets[name] = load_generator(
                Path(tmp) / name,
                architecture["netG"],
                architecture["ngf"],
                architecture["norm"],
                in_nc if name == "G_A" else out_nc,
                out_nc if name == "G_A" else in_nc,
                dropout=bool(architecture.get("dropout", False)),
                device=device,
            ).eval()
        evaluator = Evaluator(
            root,
            cfg,
            device=device,
            inception_weights=cfg.inception_weights or None,
            show_progress=False,
        )
        result = evaluator.evaluate(generator_translator(nets["G_A"], nets["G_B"]))
        return result.scores.save(Path(tmp) / "evaluation.npz").read_bytes()
