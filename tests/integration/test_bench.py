"""`python -m cyclegan bench`: runs on CPU at a small size and writes every field; on an H100 it
must meet the issue's targets (skipped elsewhere)."""

from __future__ import annotations

import json

import pytest
import torch

from cyclegan.bench import (
    BATCH1_TARGET,
    THROUGHPUT_TARGET,
    Shape,
    count_flops,
    default_configs,
    run_bench,
)
from cyclegan.commands import main
from cyclegan.errors import UserError

CONFIG_FIELDS = {
    "name",
    "batch",
    "precision",
    "channels_last",
    "compile",
    "cuda_graphs",
    "ms_per_iter",
    "pairs_per_s",
    "speedup",
    "tflops",
    "peak_memory_mb",
    "peak_memory_kind",
    "warmup_s",
    "losses_finite",
}
TOP_FIELDS = {
    "command",
    "device",
    "device_type",
    "torch",
    "cuda",
    "cudnn",
    "python",
    "size",
    "blocks",
    "ngf",
    "ndf",
    "iters",
    "warmup",
    "peak_memory_kind",
    "flops_per_iter",
    "configs",
    "targets",
    "loader",
    "loss_check",
}


@pytest.fixture(autouse=True)
def restore_threads():
    threads = torch.get_num_threads()  # --threads changes them for the whole process
    yield
    torch.set_num_threads(threads)


def test_bench_runs_on_cpu_and_writes_its_json_with_every_field(tmp_path, capsys):
    out = tmp_path / "bench.json"
    code = main(
        [
            "bench",
            "--device",
            "cpu",
            "--threads",
            "1",
            "--size",
            "32",
            "--blocks",
            "1",
            "--ngf",
            "8",
            "--ndf",
            "8",
            "--batch",
            "1,2",
            "--iters",
            "2",
            "--warmup",
            "1",
            "--loader-workers",
            "0",
            "--loss-check",
            "8",
            "--json",
            str(out),
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "eager-fp32-b1" in printed and "speed-up" in printed and f"wrote {out}" in printed

    report = json.loads(out.read_text())
    assert TOP_FIELDS <= set(report)
    assert report["command"].startswith("python -m cyclegan bench --size 32 --blocks 1")
    assert report["device_type"] == "cpu" and report["peak_memory_kind"].startswith("cpu_")
    names = [c["name"] for c in report["configs"]]
    assert names == [c.name for c in default_configs(torch.device("cpu"), [1, 2])]
    for config in report["configs"]:
        assert CONFIG_FIELDS <= set(config), config["name"]
        assert config["ms_per_iter"] > 0 and config["pairs_per_s"] > 0 and config["tflops"] > 0
        assert config["losses_finite"] and config["peak_memory_mb"] >= 0
    baseline = report["configs"][0]
    assert baseline["name"] == "eager-fp32-b1" and baseline["speedup"] == 1.0
    assert (
        report["flops_per_iter"]["2"] == 2 * report["flops_per_iter"]["1"]
    )  # the work scales with the batch
    assert report["loader"]["pairs_per_s"] > 0 and report["loader"]["share_of_step_time"] > 0
    assert set(report["loss_check"]["configs"]) == {
        n for n in names if n.endswith("-b1") and n != "eager-fp32-b1"
    }
    assert not report["targets"]["this_run_applies"]


def test_flop_count_matches_the_h100_anchors():
    """1.879 TFLOP per 256x256 iteration with 9 blocks, 0.338 at 128x128 with 6
    (PERFORMANCE_ANCHORS.md)."""
    assert count_flops(Shape(256, 9), 1) / 1e12 == pytest.approx(1.879, abs=1e-3)
    assert count_flops(Shape(128, 6), 1) / 1e12 == pytest.approx(0.338, abs=1e-3)


@pytest.mark.parametrize(
    "args, message",
    [
        (["--batch", "1,x"], "--batch"),
        (["--size", "30"], "--size"),
        (["--configs", "warp-drive"], "--configs"),
    ],
)
def test_bench_rejects_bad_options(args, message):
    with pytest.raises(UserError, match=message):
        main(["bench", "--device", "cpu", "--iters", "1", *args])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.gpu
@pytest.mark.slow
def test_bench_meets_the_h100_targets():
    name = torch.cuda.get_device_name()
    if not any(kind in name for kind in ("H100", "H200")):
        pytest.skip(f"the targets are set for an H100; this is a {name}")
    device = torch.device("cuda")
    report = run_bench(Shape(256, 9), device, default_configs(device, [1, 8]), iters=30, warmup=5)
    print(
        json.dumps(
            [
                {k: c[k] for k in ("name", "ms_per_iter", "pairs_per_s", "speedup", "tflops")}
                for c in report["configs"]
            ],
            indent=1,
        )
    )
    targets = report["targets"]
    assert all(c["losses_finite"] for c in report["configs"])
    assert targets["batch1_speedup"] >= BATCH1_TARGET, targets
    assert targets["best_speedup"] >= THROUGHPUT_TARGET, targets
