"""The learning tests: a small CycleGAN really learns on the CPU, measured against the ground truth
of the synthetic pairs: the colorshift mapping, and the photo kind's film look on held-out
photographs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
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
    return float(
        np.mean(
            [
                _psnr(np.asarray(x, np.float32) / 255, np.asarray(y, np.float32) / 255)
                for x, y in pairs
            ]
        )
    )


def _psnr_untranslated_and_translated(run: Path, data: Path) -> tuple[float, float]:
    """Mean PSNR of testA/ to testA_gt/, and of G_A's translations of testA/ to testA_gt/."""
    net = load_generator(run / "latest_net_G_A.pth")
    names = sorted(p.name for p in (data / "testA").iterdir())
    inputs = [Image.open(data / "testA" / n).convert("RGB") for n in names]
    truths = [Image.open(data / "testA_gt" / n).convert("RGB") for n in names]
    with torch.no_grad():
        translated = [to_image(net(to_tensor(img)[None])[0]) for img in inputs]
    before, after = _mean_psnr(zip(inputs, truths)), _mean_psnr(zip(translated, truths))
    print(f"PSNR to ground truth: untranslated {before:.2f} dB, translated {after:.2f} dB")
    return before, after


def test_colorshift_translation_gets_5db_closer_to_ground_truth(tmp_path):
    data = generate("colorshift", tmp_path / "data", n_train=60, n_test=20, size=32, seed=0)
    cfg = tiny_config(
        data,
        tmp_path / "ck",
        name="learn",
        ngf=16,
        ndf=16,
        n_epochs=4,
        n_epochs_decay=1,
        num_threads=1,
    )
    Trainer(
        cfg, show_progress=False
    ).fit()  # 300 iterations, about half a minute on two cores: ~9 dB closer (seeds 0-2)
    before, after = _psnr_untranslated_and_translated(tmp_path / "ck" / "learn", data)
    assert after >= before + 5.0


@pytest.mark.slow
def test_photo_translation_gets_closer_to_ground_truth_on_held_out_photographs(tmp_path):
    """The film look, learned from crops of six photographs (A and B: opposite halves of each),
    applied to crops of three photographs held out of training: translated, they are at least
    PHOTO_GAIN_DB closer to the ground truth than untranslated.

    Calibration (this 2-core machine, OMP_NUM_THREADS=2, under the heavy-command lock; 200 crops per
    domain at 32x32, batch 4, 10 + 10 epochs = 1000 steps, about 100 s of training): untranslated
    16.38 dB, translated 20.04 dB (+3.66 dB) at seed 0, the same in two runs (training on the CPU is
    deterministic). Other seeds, for the spread of a trajectory that a change elsewhere reshuffles:
    +1.70, +0.88, +3.29, +2.30, +2.83 dB (seeds 1-5). The bar, 0.75 dB, lies below every one of
    them; what it rejects, measured with the same run and seed: the paper's instance normalization
    (16.38 -> 12.46 dB, -3.92: an instance-normalised generator cannot see an image's overall tone,
    so it paints the training photographs' average one; docs/photo.md), or domains A and B cropped
    from different photographs (+0.48 dB: the domains then differ in content too, and the look is
    not what sets them apart).
    """
    data = generate("photo", tmp_path / "data", n_train=200, n_test=20, size=32, seed=0)
    cfg = tiny_config(
        data,
        tmp_path / "ck",
        name="photo",
        ngf=16,
        ndf=16,
        norm="batch",
        batch_size=4,
        n_epochs=10,
        n_epochs_decay=10,
        num_threads=1,
    )
    Trainer(cfg, show_progress=False).fit()
    before, after = _psnr_untranslated_and_translated(tmp_path / "ck" / "photo", data)
    assert after >= before + PHOTO_GAIN_DB


PHOTO_GAIN_DB = 0.75
