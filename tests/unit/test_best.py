"""A trial's best epoch: kept in storage (a folder, and S3 on moto) by its metric, ties to the later
epoch, NaN never, the previous best removed, a resumed run comparing with what it kept; ranked and
read back by that best."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from orchestrator.storage.best import (
    BEST_CHECKPOINT,
    BEST_EPOCH,
    BestKeeper,
    Ranking,
    best_key,
    fetch_best,
    read_best,
)
from orchestrator.storage.location import parse_storage


def _trainer_output(folder: Path, epoch: int) -> Path:
    """What the trainer leaves in its output folder after an epoch: the networks and the config."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("G_A", "G_B", "D_A", "D_B"):
        (folder / f"latest_net_{name}.pth").write_bytes(f"{name} after epoch {epoch}".encode())
    (folder / "config.json").write_text('{"netG": "resnet_1blocks"}')
    return folder


@pytest.fixture(params=["folder", "s3"])
def storage(request, tmp_path):
    if request.param == "folder":
        return parse_storage(str(tmp_path / "runs"))
    import boto3

    request.getfixturevalue("s3_env")
    boto3.client("s3").create_bucket(Bucket="best-epochs")
    return parse_storage("s3://best-epochs/runs")


def test_the_best_epoch_is_kept_ties_go_to_the_later_epoch_and_nan_never_wins(storage, tmp_path):
    keeper = BestKeeper(Ranking("fid", "min"), storage, "task-t1")
    out = tmp_path / "out"
    reported = {}
    for epoch, fid in enumerate([90.0, 80.0, 85.0, 80.0, math.nan, 95.0], start=1):
        reported[epoch] = keeper.update(epoch, {"fid": fid}, _trainer_output(out, epoch))
    assert reported[1] == {
        best_key("fid"): 90.0,
        BEST_EPOCH: 1,
        BEST_CHECKPOINT: storage.run_uri("task-t1", "best"),
    }
    assert [reported[e][BEST_EPOCH] for e in range(1, 7)] == [
        1,
        2,
        2,
        4,
        4,
        4,
    ]  # epoch 4 ties epoch 2 and wins
    record = read_best(storage, "task-t1")
    assert (record.epoch, record.value, record.metric, record.mode) == (4, 80.0, "fid", "min")

    fetched, again = fetch_best(storage, "task-t1", tmp_path / "fetched")
    assert again == record
    assert (fetched / "latest_net_G_A.pth").read_bytes() == b"G_A after epoch 4"
    assert sorted(p.name for p in fetched.iterdir()) == [
        "config.json",
        "latest_net_G_A.pth",
        "latest_net_G_B.pth",
    ]
    # only one epoch's folder stays
    fs = storage.filesystem
    if fs is None:
        folders = sorted(p.name for p in Path(storage.path, "task-t1", "best").iterdir())
    else:
        from pyarrow import fs as pafs

        listed = fs.get_file_info(pafs.FileSelector(f"{storage.path}/task-t1/best"))
        folders = sorted(Path(info.path).name for info in listed)
    assert folders == ["best.json", "epoch_0004"]


def test_a_resumed_run_compares_with_the_best_it_kept_before(storage, tmp_path):
    first = BestKeeper(Ranking("psnr", "max"), storage, "task-t2")
    first.update(1, {"psnr": 15.0}, _trainer_output(tmp_path / "out", 1))
    resumed = BestKeeper(Ranking("psnr", "max"), storage, "task-t2")
    assert resumed.update(2, {"psnr": 14.0}, _trainer_output(tmp_path / "out", 2))[BEST_EPOCH] == 1
    assert resumed.update(3, {"psnr": 16.0}, _trainer_output(tmp_path / "out", 3))[BEST_EPOCH] == 3


def test_no_evaluated_epoch_reports_nan_and_keeps_nothing(tmp_path):
    storage = parse_storage(str(tmp_path / "runs"))
    keeper = BestKeeper(Ranking("psnr", "max"), storage, "task-t3")
    report = keeper.update(1, {"loss_G": 3.0}, _trainer_output(tmp_path / "out", 1))
    assert list(report) == [best_key("psnr")] and math.isnan(report[best_key("psnr")])
    assert (
        read_best(storage, "task-t3") is None
        and fetch_best(storage, "task-t3", tmp_path / "x") is None
    )
