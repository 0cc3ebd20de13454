"""The one learning test: a small CycleGAN really learns the colorshift mapping on the CPU."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from conftest import tiny_config
from cyclegan.checkpoint import load_generator
from cyclegan.sources.synthetic import generate
from cyclegan.trainer import Trainer
from cyclegan.translate import to_image, to_tensor


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / np.mean((a - b) ** 2)))


def _mean_psnr(pairs) -> float:
    return float(np.mean([_psnr(np.asarray(x, np.float32) / 255, np.asarray(y, np.float32) / 255) for x, y in pairs]))


def test_colorshift_translation_gets_5db_closer_to_ground_truth(tmp_path):
    data = generate("colorshift", tmp_path / "data", n_train=60, n_test=20, size=32, seed=0)
    cfg = tiny_config(data, tmp_path / "ck", name="learn", ngf=16, ndf=16, n_epochs=4, n_epochs_decay=1, num_threads=1)
    Trainer(cfg, show_progress=False).fit()  # 300 iterations, about half a minute on two cores: ~9 dB closer (seeds 0-2)

    net = load_generator(tmp_path / "ck" / "learn" / "latest_net_G_A.pth")
    names = sorted(p.name for p in (data / "testA").iterdir())
    inputs = [Image.open(data / "testA" / n).convert("RGB") for n in names]
    truths = [Image.open(data / "testA_gt" / n).convert("RGB") for n in names]
    with torch.no_grad():
        translated = [to_image(net(to_tensor(img)[None])[0]) for img in inputs]
    before, after = _mean_psnr(zip(inputs, truths)), _mean_psnr(zip(translated, truths))
    print(f"PSNR to ground truth: untranslated {before:.1f} dB, translated {after:.1f} dB")
    assert after >= before + 5.0
