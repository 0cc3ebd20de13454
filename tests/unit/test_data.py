"""The unaligned dataset, its transforms and sampler, and every bad-input message."""

from __future__ import annotations

import logging
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from cyclegan.config import TrainConfig
from cyclegan.data import DatasetError, EpochShardSampler, UnalignedDataset, to_model_input
from cyclegan.sources.layout import check_dataset_root


def _cfg(root, **kw) -> TrainConfig:
    values = dict(dataroot=str(root), load_size=36, crop_size=32)
    values.update(kw)
    return TrainConfig(**values)


def _write(path, size=(40, 30), color=(200, 10, 10)):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)


def test_random_b_and_serial_b(tiny_dataset):
    ds = UnalignedDataset(tiny_dataset, _cfg(tiny_dataset))
    assert len(ds) == 12
    b_names = {ds[(0, i)]["B_path"] for i in range(12)}
    assert {ds[(0, i)]["A_path"] for i in range(12)} == {str(p) for p in ds.A_paths}  # every A once
    assert (
        b_names != {str(p) for p in ds.B_paths} or len(b_names) < 12
    )  # B drawn at random, with repeats
    serial = UnalignedDataset(tiny_dataset, _cfg(tiny_dataset, serial_batches=True))
    assert all(serial[(0, i)]["B_path"] == str(serial.B_paths[i]) for i in range(12))


def test_sample_randomness_is_a_function_of_seed_epoch_and_index(tiny_dataset):
    ds = UnalignedDataset(tiny_dataset, _cfg(tiny_dataset))
    a, b = ds[(3, 5)], ds[(3, 5)]
    assert torch.equal(a["A"], b["A"]) and a["B_path"] == b["B_path"]
    other_epochs = [ds[(e, 5)] for e in range(4, 12)]
    assert any(
        not torch.equal(a["A"], o["A"]) for o in other_epochs
    )  # crop/flip change with the epoch


@pytest.mark.parametrize(
    "preprocess,expected",
    [
        ("resize_and_crop", (32, 32)),
        ("crop", (32, 32)),
        ("scale_width", (36, 34)),
        ("scale_width_and_crop", (32, 32)),
        ("none", (32, 32)),
    ],
)
def test_preprocess_modes(tmp_path, preprocess, expected):
    for domain in "AB":
        _write(tmp_path / f"train{domain}" / "x.png", size=(34, 33))
    item = UnalignedDataset(tmp_path, _cfg(tmp_path, preprocess=preprocess))[(0, 0)]
    assert item["A"].dtype == torch.uint8 and tuple(item["A"].shape[1:]) == expected[::-1]


def test_flip_and_scaling(tmp_path):
    img = np.zeros((32, 32, 3), np.uint8)
    img[:, :16] = 255  # left half white
    for domain in "AB":
        (tmp_path / f"train{domain}").mkdir()
        Image.fromarray(img).save(tmp_path / f"train{domain}" / "x.png")
    ds = UnalignedDataset(tmp_path, _cfg(tmp_path, preprocess="none"))
    lefts = {int(ds[(e, 0)]["A"][0, 0, 0]) for e in range(20)}
    assert lefts == {0, 255}  # flipped in some epochs, not in others
    no_flip = UnalignedDataset(tmp_path, _cfg(tmp_path, preprocess="none", no_flip=True))
    assert {int(no_flip[(e, 0)]["A"][0, 0, 0]) for e in range(10)} == {255}
    x = to_model_input(ds[(0, 0)]["A"][None], torch.device("cpu"))
    assert x.min().item() == -1.0 and x.max().item() == 1.0


def test_btoa_swaps_the_domains(tiny_dataset):
    ds = UnalignedDataset(tiny_dataset, _cfg(tiny_dataset, direction="BtoA"))
    assert "trainB" in str(ds.A_paths[0]) and "trainA" in str(ds.B_paths[0])


def test_sampler_shards_are_disjoint_cover_and_reshuffle():
    shards = [EpochShardSampler(10, rank=r, world_size=3, seed=1) for r in range(3)]
    for s in shards:
        s.set_epoch(2)
    parts = [s.indices() for s in shards]
    assert all(len(p) == 4 for p in parts)
    assert set().union(*parts) == set(range(10))
    shards[0].set_epoch(3)
    assert shards[0].indices() != parts[0]
    assert list(shards[0])[0][0] == 3  # items carry the epoch


def test_missing_dataset_folder(tmp_path):
    with pytest.raises(DatasetError, match=r"no trainA/ or trainB/ found"):
        check_dataset_root(tmp_path)
    (tmp_path / "trainA").mkdir()
    with pytest.raises(DatasetError, match=r"no trainB/ found \(folders here: trainA\)"):
        check_dataset_root(tmp_path)


def test_empty_folder(tmp_path):
    _write(tmp_path / "trainA" / "a.png")
    (tmp_path / "trainB").mkdir()
    with pytest.raises(DatasetError, match=r"trainB: no images found"):
        UnalignedDataset(tmp_path, _cfg(tmp_path))


def test_non_image_is_skipped_with_a_warning_or_fatal_when_strict(tmp_path, caplog):
    for domain in "AB":
        _write(tmp_path / f"train{domain}" / "a.png")
    (tmp_path / "trainA" / "notes.jpg").write_text("not an image")
    with caplog.at_level(logging.WARNING):
        ds = UnalignedDataset(tmp_path, _cfg(tmp_path))
    assert len(ds.A_paths) == 1 and len(ds.skipped) == 1
    assert "skipped 1 file(s)" in caplog.text and "notes.jpg" in caplog.text
    with pytest.raises(DatasetError, match=r"notes\.jpg: not a readable image"):
        UnalignedDataset(tmp_path, _cfg(tmp_path, strict_data=True))


def test_image_smaller_than_the_crop(tmp_path):
    for domain in "AB":
        _write(tmp_path / f"train{domain}" / "a.png", size=(64, 64))
    _write(tmp_path / "trainB" / "small.png", size=(20, 40))
    with pytest.raises(
        DatasetError, match=r"small\.png: image is 20x40, smaller than --crop_size 32"
    ):
        UnalignedDataset(tmp_path, _cfg(tmp_path, preprocess="crop"))
    UnalignedDataset(tmp_path, _cfg(tmp_path))  # resize_and_crop scales it up first: fine


def test_grayscale_channels(tmp_path, tiny_dataset):
    shutil.copytree(tiny_dataset / "trainA", tmp_path / "trainA")
    shutil.copytree(tiny_dataset / "trainB", tmp_path / "trainB")
    ds = UnalignedDataset(tmp_path, _cfg(tmp_path, input_nc=1, lambda_identity=0))
    item = ds[(0, 0)]
    assert item["A"].shape[0] == 1 and item["B"].shape[0] == 3


def _png16_rgb(path, array: np.ndarray) -> None:
    """A real 48-bit RGB PNG, written chunk by chunk (PIL writes 16 bits only for grayscale)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    h, w, _ = array.shape
    rows = b"".join(b"\0" + array[y].astype(">u2").tobytes() for y in range(h))
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 16, 2, 0, 0, 0))
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def test_16_bit_pngs_are_scaled_to_8_bits_not_saturated(tmp_path):
    from cyclegan.data import load_image

    ramp = np.linspace(0, 65535, 64 * 64).reshape(64, 64).astype(np.uint16)
    Image.fromarray(ramp).save(tmp_path / "gray16.png")
    _png16_rgb(tmp_path / "rgb16.png", np.stack([ramp, ramp[::-1], np.full_like(ramp, 30000)], -1))
    assert Image.open(tmp_path / "gray16.png").mode == "I;16"
    expected = ramp / 257.0
    for channels in (1, 3):
        out = np.asarray(load_image(tmp_path / "gray16.png", channels), dtype=np.float64)
        out = out if out.ndim == 2 else out[..., 0]
        assert np.abs(out - expected).max() <= 1.0 and (out == 255).mean() < 0.01
    rgb = np.asarray(load_image(tmp_path / "rgb16.png", 3), dtype=np.float64)
    assert (
        np.abs(rgb[..., 0] - expected).max() <= 1.0
        and np.abs(rgb[..., 2] - 30000 / 257).max() <= 1.0
    )


def test_worker_tracebacks_are_cut_to_the_message():
    text = (
        "Caught DatasetError in DataLoader worker process 0.\nOriginal Traceback (most recent call "
        "last):\n"
        '  File "x.py", line 1, in f\ncyclegan.errors.DatasetError: /d/a.png: cannot read image '
        "(image file is truncated)\n"
    )
    assert str(DatasetError(text)) == "/d/a.png: cannot read image (image file is truncated)"
    assert str(DatasetError("/d: plain")) == "/d: plain"
