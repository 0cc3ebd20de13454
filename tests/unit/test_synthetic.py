"""Synthetic domain pairs: layout, ground truth, and that the pairs are truly unpaired."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
from PIL import Image

from cyclegan.commands import main
from cyclegan.commands.runner import run_cli
from cyclegan.errors import DatasetError, UserError
from cyclegan.sources import check_dataset_reference, photos
from cyclegan.sources.synthetic import ORIGIN_FILE, colorshift_forward, generate


def _load(path) -> np.ndarray:
    return np.asarray(Image.open(path), np.float32) / 255


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1.0 / np.mean((a - b) ** 2)))


@pytest.mark.parametrize("kind,far", [("colorshift", 16), ("stripes", 16), ("photo", 20)])
def test_layout_and_ground_truth(tmp_path, kind, far):
    out = generate(kind, tmp_path / kind, n_train=6, n_test=3, size=32, seed=1)
    for name, count in [
        ("trainA", 6),
        ("trainB", 6),
        ("testA", 3),
        ("testB", 3),
        ("testA_gt", 3),
        ("testB_gt", 3),
    ]:
        files = sorted((out / name).iterdir())
        assert len(files) == count
        assert Image.open(files[0]).size == (32, 32)
    assert [p.name for p in sorted((out / "testA").iterdir())] == [
        p.name for p in sorted((out / "testA_gt").iterdir())
    ]
    # the untranslated test images are far from their ground truth
    untranslated = np.mean(
        [
            psnr(_load(out / "testA" / f.name), _load(out / "testA_gt" / f.name))
            for f in (out / "testA").iterdir()
        ]
    )
    assert untranslated < far


def test_colorshift_ground_truth_is_the_mapping(tmp_path):
    out = generate("colorshift", tmp_path, n_train=1, n_test=2, size=16, seed=3)
    a = _load(out / "testA" / "00000.png")
    assert np.abs(colorshift_forward(a) - _load(out / "testA_gt" / "00000.png")).max() < 2.5 / 255
    b_truth = _load(out / "testB_gt" / "00001.png")
    assert (
        np.abs(colorshift_forward(b_truth) - _load(out / "testB" / "00001.png")).max() < 2.5 / 255
    )
    assert psnr(_load(out / "testB" / "00001.png"), b_truth) < 12


def test_train_domains_are_unpaired(tmp_path):
    out = generate("colorshift", tmp_path, n_train=5, n_test=0, size=16, seed=0)
    for i in range(5):
        a = _load(out / "trainA" / f"{i:05d}.png")
        b = _load(out / "trainB" / f"{i:05d}.png")
        assert (
            np.abs(colorshift_forward(a) - b).max() > 0.1
        )  # B is not the translation of the same-index A


def test_stripes_differ_only_inside_shapes(tmp_path):
    out = generate("stripes", tmp_path, n_train=1, n_test=1, size=32, seed=2)
    plain, striped = _load(out / "testA" / "00000.png"), _load(out / "testA_gt" / "00000.png")
    changed = np.any(np.abs(plain - striped) > 0.02, axis=2)
    assert 0.02 < changed.mean() < 0.6  # some pixels darkened (stripes), not all
    assert np.all(striped[changed] <= plain[changed] + 1e-3)  # stripes only darken
    assert (
        np.allclose(plain[0, 0], striped[0, 0]) or changed[0, 0]
    )  # background untouched unless under a shape


def test_same_seed_same_data(tmp_path):
    a = generate("stripes", tmp_path / "a", n_train=2, n_test=1, size=16, seed=7)
    b = generate("stripes", tmp_path / "b", n_train=2, n_test=1, size=16, seed=7)
    assert (a / "trainB" / "00001.png").read_bytes() == (b / "trainB" / "00001.png").read_bytes()


def test_bad_arguments(tmp_path):
    with pytest.raises(
        UserError, match="unknown synthetic kind 'zebras'; available: colorshift, stripes, photo"
    ):
        generate("zebras", tmp_path)
    with pytest.raises(UserError, match="out of bounds: size=4"):
        generate("stripes", tmp_path, size=4)
    with pytest.raises(
        UserError, match=r"out of bounds: size=512 \(accepted for photo: size 8..256"
    ):
        generate("photo", tmp_path, size=512)


# -- photo: crops of real photographs, domain B with a film look -----------------------------------
def _crops(root) -> dict[str, tuple[str, tuple[float, ...]]]:
    """origin.json's crops: image -> (photograph, box)."""
    record = json.loads((root / ORIGIN_FILE).read_text())
    return {
        name: (value.split()[0], tuple(map(float, value.split()[1:])))
        for name, value in record["crops"].items()
    }


@pytest.fixture(scope="module")
def photo_set(tmp_path_factory):
    return generate(
        "photo", tmp_path_factory.mktemp("photo"), n_train=40, n_test=12, size=24, seed=4
    )


def test_photo_same_seed_same_data_other_seed_other_crops(photo_set, tmp_path):
    again = generate("photo", tmp_path / "again", n_train=40, n_test=12, size=24, seed=4)
    files = sorted(p.relative_to(photo_set) for p in photo_set.rglob("*") if p.is_file())
    assert (
        len(files) == 2 * 40 + 4 * 12 + 1
    )  # trainA trainB, testA testB and their _gt, origin.json
    assert files == sorted(p.relative_to(again) for p in again.rglob("*") if p.is_file())
    assert all((photo_set / f).read_bytes() == (again / f).read_bytes() for f in files)
    other = generate("photo", tmp_path / "other", n_train=40, n_test=12, size=24, seed=5)
    assert _crops(other) != _crops(photo_set)
    assert (other / "trainA" / "00000.png").read_bytes() != (
        photo_set / "trainA" / "00000.png"
    ).read_bytes()


def _overlap(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def test_photo_domains_never_share_a_pixel_and_the_test_photographs_are_held_out(photo_set):
    crops = _crops(photo_set)
    part_of = lambda name: "test" if name.startswith("test") else name.split("/")[0]  # noqa: E731
    used = {
        part: {photo for name, (photo, _) in crops.items() if part_of(name) == part}
        for part in ("trainA", "trainB", "test")
    }
    # every training photograph feeds both domains (so the checks below are about real crops) ...
    assert used["trainA"] == used["trainB"] == set(photos.TRAIN_PHOTOS) and used["test"] == set(
        photos.TEST_PHOTOS
    )
    # ... the test photographs are held out of training, the stereo pair (one scene) among them ...
    assert not set(photos.TRAIN_PHOTOS) & set(photos.TEST_PHOTOS)
    assert {"motorcycle_left.png", "motorcycle_right.png"} <= used["test"]
    # ... and domain A's crops of a photograph never overlap domain B's: the data is truly unpaired
    for photo in photos.TRAIN_PHOTOS:
        boxes = {
            part: [box for name, (p, box) in crops.items() if p == photo and part_of(name) == part]
            for part in ("trainA", "trainB")
        }
        assert boxes["trainA"] and boxes["trainB"]
        assert not any(_overlap(a, b) for a in boxes["trainA"] for b in boxes["trainB"]), photo
        for part, part_boxes in boxes.items():
            x0, y0, x1, y1 = photos.region(photo, part)
            assert all(x0 <= b[0] and y0 <= b[1] and b[2] <= x1 and b[3] <= y1 for b in part_boxes)
    # what the record says is true: each image is that box of that photograph (domain B: with the
    # look)
    for name, (photo, box) in crops.items():
        crop = photos.Crop(photo, box).render(24)
        expected = photos.look(crop) if name.startswith(("trainB", "testB")) else crop
        assert np.abs(_load(photo_set / name) - expected).max() <= 0.5 / 255 + 1e-6, name


def test_photo_ground_truth_is_the_look_and_its_inverse(photo_set):
    names = sorted(p.name for p in (photo_set / "testA").iterdir())
    assert len(names) == 12
    for n in names:
        a, a_truth = _load(photo_set / "testA" / n), _load(photo_set / "testA_gt" / n)
        b, b_truth = _load(photo_set / "testB" / n), _load(photo_set / "testB_gt" / n)
        assert (
            np.abs(photos.look(a) - a_truth).max() <= 0.5 / 255 + 1e-6
        )  # testA_gt = look(testA), to the 8-bit step
        assert (
            np.abs(photos.look(b_truth) - b).max() <= 0.5 / 255 + 1e-6
        )  # testB = look(testB_gt) ...
        assert (
            np.abs(photos.inverse_look(b) - b_truth).max() < 4.5 / 255
        )  # ... so testB_gt = inverse look(testB)
    # the look is a large change: the untranslated test photographs are far from their ground truth
    assert (
        np.mean(
            [psnr(_load(photo_set / "testA" / n), _load(photo_set / "testA_gt" / n)) for n in names]
        )
        < 20
    )
    assert (
        np.mean(
            [psnr(_load(photo_set / "testB" / n), _load(photo_set / "testB_gt" / n)) for n in names]
        )
        < 20
    )


def test_the_look_is_invertible_without_clipping_and_moves_colours_one_way():
    x = np.linspace(0, 1, 2001, dtype=np.float32)[:, None].repeat(3, axis=1)
    y = photos.look(x)
    assert np.all(np.diff(y, axis=0) > 0)  # strictly increasing per channel: invertible
    assert (
        y.min() >= 0.02 - 1e-6 and y.max() <= 1.0 + 1e-6
    )  # inside [0, 1] by itself: nothing to clip
    assert np.abs(photos.inverse_look(y) - x).max() < 1e-3
    # Not a symmetric re-drawing of colours (DESIGN.md 4): whatever the photograph, red goes up and
    # blue down in the midtones, blacks turn teal; so the two domains' distributions single the look
    # out.
    mid = photos.look(np.full((1, 1, 3), 0.5, np.float32))[0, 0]
    assert mid[0] > 0.65 and mid[2] < 0.4
    black = photos.look(np.zeros((1, 1, 3), np.float32))[0, 0]
    assert black[2] > black[1] > black[0] and black[2] > 0.2


def test_a_missing_or_altered_photo_source_is_one_clear_message(tmp_path, monkeypatch, capsys):
    real_find_spec, real_folder = importlib.util.find_spec, photos.photo_folder()
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "skimage" else real_find_spec(name, *a),
    )
    with pytest.raises(
        DatasetError,
        match=r"scikit-image is not installed: astronaut.png, .*; install it into this Python",
    ):
        generate("photo", tmp_path / "none", n_train=1, n_test=1, size=16)
    assert not (tmp_path / "none").exists()
    with pytest.raises(DatasetError, match="scikit-image is not installed"):
        check_dataset_reference(
            "synthetic://photo?size=16"
        )  # what `orchestrator validate|run` check up front

    stripped = tmp_path / "site" / "skimage"
    (stripped / "data").mkdir(parents=True)
    (stripped / "data" / "chelsea.png").write_bytes(b"")
    spec = importlib.util.spec_from_file_location(
        "skimage", stripped / "__init__.py", submodule_search_locations=[str(stripped)]
    )
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: spec if name == "skimage" else real_find_spec(name, *a),
    )
    assert (
        run_cli(
            main,
            [
                "synth",
                "--kind",
                "photo",
                "--out",
                str(tmp_path / "out"),
                "--n-train",
                "1",
                "--n-test",
                "1",
            ],
        )
        == 2
    )
    err = capsys.readouterr().err
    assert err.startswith(
        "error: synthetic://photo crops the sample photographs that ship inside the scikit-image "
        "wheel"
    )
    assert (
        f"not in {stripped / 'data'}: astronaut.png, coffee.png" in err
        and "chelsea.png," not in err
    )
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1

    for name in photos.SHA256:  # all there now, but chelsea.png is not the photograph it should be
        if name != "chelsea.png":
            (stripped / "data" / name).symlink_to(real_folder / name)
    (stripped / "data" / "chelsea.png").write_bytes(
        (real_folder / "chelsea.png").read_bytes()[:-1] + b"x"
    )
    with pytest.raises(
        DatasetError,
        match=(
            r"chelsea.png: not the photograph synthetic://photo is built on \(its SHA-256 "
            r"differs\); reinstall"
        ),
    ):
        generate("photo", tmp_path / "altered", n_train=20, n_test=0, size=16)


def test_data_inspect_says_where_the_photographs_come_from(tmp_path, capsys):
    ref = "synthetic://photo?size=16&n_train=3&n_test=1&seed=0"
    assert (
        main(["data", "inspect", ref, "--cache_dir", str(tmp_path / "cache"), "--no_progress"]) == 0
    )
    out = capsys.readouterr().out
    origin = next(line for line in out.splitlines() if line.startswith("origin:"))
    assert (
        "crops of the sample photographs of scikit-image" in origin
        and str(photos.photo_folder()) in origin
    )
    assert all(name in origin for name in photos.TRAIN_PHOTOS + photos.TEST_PHOTOS)
    rows = {
        line.split()[0]: line.split()[1:3]
        for line in out.splitlines()
        if line.split()[0].endswith("/") or line.startswith("total")
    }
    assert rows["trainA/"] == ["3", "0"] and rows["testB_gt/"] == ["1", "0"]
    assert rows["total"] == ["10", "0"]  # the origin record is not counted as a stray file
