"""Synthetic domain pairs: layout, ground truth, and that the pairs are truly unpaired."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from cyclegan.errors import UserError
from cyclegan.sources.synthetic import colorshift_forward, generate


def _load(path) -> np.ndarray:
    return np.asarray(Image.open(path), np.float32) / 255


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / np.mean((a - b) ** 2)))


@pytest.mark.parametrize("kind", ["colorshift", "stripes"])
def test_layout_and_ground_truth(tmp_path, kind):
    out = generate(kind, tmp_path / kind, n_train=6, n_test=3, size=32, seed=1)
    for name, count in [("trainA", 6), ("trainB", 6), ("testA", 3), ("testB", 3), ("testA_gt", 3), ("testB_gt", 3)]:
        files = sorted((out / name).iterdir())
        assert len(files) == count
        assert Image.open(files[0]).size == (32, 32)
    assert [p.name for p in sorted((out / "testA").iterdir())] == [p.name for p in sorted((out / "testA_gt").iterdir())]
    # the untranslated test images are far from their ground truth
    untranslated = np.mean([psnr(_load(out / "testA" / f.name), _load(out / "testA_gt" / f.name)) for f in (out / "testA").iterdir()])
    assert untranslated < 16


def test_colorshift_ground_truth_is_the_mapping(tmp_path):
    out = generate("colorshift", tmp_path, n_train=1, n_test=2, size=16, seed=3)
    a = _load(out / "testA" / "00000.png")
    assert np.abs(colorshift_forward(a) - _load(out / "testA_gt" / "00000.png")).max() < 2.5 / 255
    b_truth = _load(out / "testB_gt" / "00001.png")
    assert np.abs(colorshift_forward(b_truth) - _load(out / "testB" / "00001.png")).max() < 2.5 / 255
    assert psnr(_load(out / "testB" / "00001.png"), b_truth) < 12


def test_train_domains_are_unpaired(tmp_path):
    out = generate("colorshift", tmp_path, n_train=5, n_test=0, size=16, seed=0)
    for i in range(5):
        a = _load(out / "trainA" / f"{i:05d}.png")
        b = _load(out / "trainB" / f"{i:05d}.png")
        assert np.abs(colorshift_forward(a) - b).max() > 0.1  # B is not the translation of the same-index A


def test_stripes_differ_only_inside_shapes(tmp_path):
    out = generate("stripes", tmp_path, n_train=1, n_test=1, size=32, seed=2)
    plain, striped = _load(out / "testA" / "00000.png"), _load(out / "testA_gt" / "00000.png")
    changed = np.any(np.abs(plain - striped) > 0.02, axis=2)
    assert 0.02 < changed.mean() < 0.6                    # some pixels darkened (stripes), not all
    assert np.all(striped[changed] <= plain[changed] + 1e-3)  # stripes only darken
    assert np.allclose(plain[0, 0], striped[0, 0]) or changed[0, 0]  # background untouched unless under a shape


def test_same_seed_same_data(tmp_path):
    a = generate("stripes", tmp_path / "a", n_train=2, n_test=1, size=16, seed=7)
    b = generate("stripes", tmp_path / "b", n_train=2, n_test=1, size=16, seed=7)
    assert (a / "trainB" / "00001.png").read_bytes() == (b / "trainB" / "00001.png").read_bytes()


def test_bad_arguments(tmp_path):
    with pytest.raises(UserError, match="unknown synthetic kind 'zebras'; available: colorshift, stripes"):
        generate("zebras", tmp_path)
    with pytest.raises(UserError, match="out of bounds: size=4"):
        generate("stripes", tmp_path, size=4)
