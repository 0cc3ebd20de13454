"""The training-step benchmark behind `python -m cyclegan bench`: the plain eager fp32 batch-1 step
against the fast configurations.

Everything runs in one process on one device, on synthetic inputs, so every speed-up is measured
against the eager step of the same run (that step's time moves between machines of one kind).
Per configuration: ms/iteration, image pairs/s, speed-up, achieved TFLOP/s (the work of one step
counted once per batch size with torch.utils.flop_counter on the meta device: no memory, no time)
and peak memory. Optional: the data loader's capacity (`--loader-workers`), and the loss curves of
the batch-1 configurations against eager fp32 on the same data and seed (`--loss-check N`).
"""

from __future__ import annotations

import gc
import logging
import os
import platform
import resource
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from .config import TrainConfig
from .metric_names import LOSS_NAMES
from .model import CycleGAN
from .speed import apply_speed_options

log = logging.getLogger(__name__)

# The targets on one H100 at 256x256, 9 blocks, against eager fp32 batch 1 of the same run.
BATCH1_TARGET, THROUGHPUT_TARGET = 4.0, 7.0


@dataclass(frozen=True)
class BenchConfig:
    kind: str  # e.g. "compiled-graphs-bf16-cl"; with the batch it names the configuration
    batch: int
    precision: str = "fp32"
    channels_last: bool = False
    compile: str = "none"
    cuda_graphs: bool = False

    @property
    def name(self) -> str:
        return f"{self.kind}-b{self.batch}"


@dataclass(frozen=True)
class Shape:
    size: int = 256
    blocks: int = 9
    ngf: int = 64
    ndf: int = 64


BASELINE = BenchConfig("eager-fp32", 1)


def default_configs(
    device: torch.device, batches: list[int], compile_mode: str = "default"
) -> list[BenchConfig]:
    """CUDA: each lever alone at batch 1, then compiled kernels with and without captured graphs at
    every batch. CPU: the variants that make sense there (no compile: minutes of C++ builds)."""
    if device.type == "cuda":
        fast = {"precision": "bf16", "channels_last": True}
        configs = [
            BASELINE,
            BenchConfig("eager-bf16-cl", 1, **fast),
            BenchConfig("graphs-bf16-cl", 1, cuda_graphs=True, **fast),
        ]
        for batch in batches:
            configs.append(BenchConfig("compiled-bf16-cl", batch, compile=compile_mode, **fast))
            configs.append(
                BenchConfig(
                    "compiled-graphs-bf16-cl", batch, compile=compile_mode, cuda_graphs=True, **fast
                )
            )
        return configs
    configs = [
        BASELINE,
        BenchConfig("eager-fp32-cl", 1, channels_last=True),
        BenchConfig("eager-bf16", 1, precision="bf16"),
        BenchConfig("eager-bf16-cl", 1, precision="bf16", channels_last=True),
    ]
    return configs + [BenchConfig("eager-fp32", batch) for batch in batches if batch != 1]


def train_config(spec: BenchConfig, shape: Shape) -> TrainConfig:
    """The paper's recipe (identity loss, 50-image pool, LSGAN) at the benchmark's shape."""
    return TrainConfig(
        netG=f"resnet_{shape.blocks}blocks",
        ngf=shape.ngf,
        ndf=shape.ndf,
        crop_size=shape.size,
        load_size=shape.size,
        batch_size=spec.batch,
        precision=spec.precision,
        channels_last=str(spec.channels_last).lower(),
        compile=spec.compile,
        cuda_graphs=str(spec.cuda_graphs).lower(),
        device="cpu",
    )


def build_model(
    spec: BenchConfig, shape: Shape, device: torch.device, seed: int = 0, wrap=None
) -> CycleGAN:
    """`wrap`: applied to both network groups (e.g. cyclegan.speed.ddp_wrap), as a DDP worker
    does."""
    cfg = train_config(spec, shape)
    torch.manual_seed(seed)
    model = CycleGAN(cfg, device)
    apply_speed_options(model, cfg, device, wrap=wrap)
    return model


def count_flops(shape: Shape, batch: int) -> int:
    """FLOPs of one plain training step (forward, backward, both network groups) at `batch`."""
    from torch.utils.flop_counter import (
        FlopCounterMode,
    )  # imported here: `cyclegan --help` should stay quick

    model = CycleGAN(train_config(BenchConfig("count", batch), shape), "meta")
    real = torch.empty(batch, 3, shape.size, shape.size, device="meta")
    with FlopCounterMode(display=False) as counter:
        model.train_step(real, real)
    return counter.get_total_flops()


# -- memory ---------------------------------------------------------------------------------------
def _proc_status_mb(field: str) -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024  # kB
    except OSError:
        pass
    return None


class PeakMemory:
    """Peak memory of one configuration. CUDA: the caching allocator's high-water mark. CPU: how far
    the process's peak resident set rose above where it stood at the start (Linux lets us reset the
    peak between configurations; elsewhere ru_maxrss only shows rises above the earlier peak)."""

    def __init__(self, device: torch.device):
        self.device = device
        if device.type == "cuda":
            self.kind = "cuda_max_memory_allocated"
            torch.cuda.synchronize(device)
            torch.cuda.reset_peak_memory_stats(device)
            return
        try:
            Path("/proc/self/clear_refs").write_text(
                "5"
            )  # 5: reset the peak RSS (VmHWM) to the current RSS
            self.kind, self.start = "cpu_peak_rss_delta", _proc_status_mb("VmRSS")
        except OSError:
            self.kind, self.start = "cpu_ru_maxrss_delta", None
        if self.start is None:
            self.kind, self.start = (
                "cpu_ru_maxrss_delta",
                resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            )

    def peak_mb(self) -> float:
        if self.device.type == "cuda":
            return torch.cuda.max_memory_allocated(self.device) / 2**20
        if self.kind == "cpu_peak_rss_delta":
            return max(0.0, (_proc_status_mb("VmHWM") or 0.0) - self.start)
        return max(0.0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024 - self.start)


# -- timing ---------------------------------------------------------------------------------------
def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _inputs(
    batch: int, size: int, device: torch.device, memory_format, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    a, b = (torch.rand(batch, 3, size, size, generator=gen) * 2 - 1 for _ in range(2))
    return a.to(device, memory_format=memory_format), b.to(device, memory_format=memory_format)


def _release(spec: BenchConfig, device: torch.device) -> None:
    if spec.compile != "none":
        # each configuration compiles afresh; old entries would count against the recompile limit
        torch._dynamo.reset()
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def measure(
    spec: BenchConfig, shape: Shape, device: torch.device, iters: int, warmup: int, wrap=None
) -> dict:
    """Time `iters` training steps after `warmup` ones (compilation, cuDNN benchmarking, graph
    capture)."""
    memory = PeakMemory(device)
    model = build_model(spec, shape, device, wrap=wrap)
    real_A, real_B = _inputs(spec.batch, shape.size, device, model.memory_format)
    if model.graphed_step is not None:
        warmup = max(
            warmup, model.graphed_step.warmup + 2
        )  # capture happens before the timed steps
    start = time.perf_counter()
    for _ in range(warmup):
        model.train_step(real_A, real_B)
    _sync(device)
    warmup_s = time.perf_counter() - start
    start = time.perf_counter()
    for _ in range(iters):
        losses = model.train_step(real_A, real_B)
    _sync(device)
    elapsed = time.perf_counter() - start
    finite = bool(torch.isfinite(torch.stack(list(losses.values()))).all())
    result = {
        **asdict(spec),
        "name": spec.name,
        "ms_per_iter": elapsed / iters * 1e3,
        "pairs_per_s": iters * spec.batch / elapsed,
        "peak_memory_mb": memory.peak_mb(),
        "peak_memory_kind": memory.kind,
        "warmup_s": warmup_s,
        "losses_finite": finite,
    }
    del result["kind"]
    del model, losses
    _release(spec, device)
    return result


# -- the data loader -------------------------------------------------------------------------------
def measure_loader(
    size: int, batch: int, workers: int, device: torch.device, batches: int = 40
) -> dict:
    """Pairs/s the real input pipeline delivers (decode, resize to 286/256 of the crop, random crop
    and flip in `workers` processes, pinned memory, normalisation on the device) on synthetic
    PNGs."""
    from .data import UnalignedDataset, make_loader, to_model_input
    from .sources.synthetic import generate

    with tempfile.TemporaryDirectory() as tmp:
        root = generate(
            "colorshift",
            Path(tmp) / "data",
            n_train=max(32, 4 * batch),
            n_test=0,
            size=size,
            seed=0,
        )
        cfg = TrainConfig(
            dataroot=str(root),
            crop_size=size,
            load_size=round(size * 286 / 256),
            batch_size=batch,
            num_threads=workers,
            device="cpu",
        )
        loader = make_loader(
            UnalignedDataset(root, cfg, "train"), cfg, pin_memory=device.type == "cuda"
        )
        seen, epoch, start = -1, 0, 0.0
        while seen < batches:
            loader.sampler.set_epoch(epoch)
            for item in loader:
                to_model_input(item["A"], device), to_model_input(item["B"], device)
                seen += 1
                if seen == 0:  # the first batch pays for starting the workers
                    _sync(device)
                    start = time.perf_counter()
                if seen >= batches:
                    break
            epoch += 1
        _sync(device)
        elapsed = time.perf_counter() - start
        del loader
    return {
        "workers": workers,
        "batch": batch,
        "image_size": size,
        "pairs_per_s": batches * batch / elapsed,
    }


# -- loss curves ----------------------------------------------------------------------------------
def synthetic_batches(
    iters: int, batch: int, size: int, seed: int = 0, pool: int = 32
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """`iters` unaligned (A, B) batches in [-1, 1] from the colorshift pair (a learnable mapping):
    `pool` scenes per domain, A in a fixed order, B drawn at random, all from `seed`."""
    from .sources.synthetic import KINDS

    make_pair = KINDS["colorshift"].make_pair
    rng_A, rng_B, rng_pick = (
        np.random.default_rng(s) for s in np.random.SeedSequence(seed).spawn(3)
    )
    to_tensor = lambda img: torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1))) * 2 - 1  # noqa: E731
    images_A = [to_tensor(make_pair(rng_A, size, "trainA").a) for _ in range(pool)]
    images_B = [to_tensor(make_pair(rng_B, size, "trainB").b) for _ in range(pool)]
    out = []
    for i in range(iters):
        a = torch.stack([images_A[(i * batch + j) % pool] for j in range(batch)])
        b = torch.stack([images_B[int(k)] for k in rng_pick.integers(pool, size=batch)])
        out.append((a, b))
    return out


def loss_curve(
    spec: BenchConfig, shape: Shape, device: torch.device, data: list, seed: int = 0
) -> torch.Tensor:
    """The 8 losses (columns in LOSS_NAMES order) of each iteration, training from `seed` on
    `data`."""
    model = build_model(spec, shape, device, seed)
    rows = []
    for a, b in data:
        losses = model.train_step(
            a.to(device, memory_format=model.memory_format),
            b.to(device, memory_format=model.memory_format),
        )
        rows.append(torch.stack([losses[name] for name in LOSS_NAMES]))
    curve = torch.stack(rows).float().cpu()
    del model
    _release(spec, device)
    return curve


def compare_curves(reference: torch.Tensor, other: torch.Tensor, windows: int = 4) -> dict:
    """Is `other` within the noise of `reference`? Per loss and per window of iterations, the noise
    is the reference's own iteration-to-iteration standard deviation there; the curves agree when
    every window mean of `other` lies within one such deviation of the reference's (plus 1e-3 for
    flat losses). Also reports how close the very first step is (same weights, same data: only
    arithmetic differs)."""
    n = min(len(reference), len(other))
    bounds = [round(i * n / windows) for i in range(windows + 1)]
    worst, rows = 0.0, []
    for lo, hi in zip(bounds, bounds[1:]):
        ref, oth = reference[lo:hi], other[lo:hi]
        noise = ref.std(0, unbiased=False) + 1e-3
        excess = (oth.mean(0) - ref.mean(0)).abs() / noise
        worst = max(worst, float(excess.max()))
        rows.append(
            {
                "iterations": [lo + 1, hi],
                "reference_mean": ref.mean(0).tolist(),
                "mean": oth.mean(0).tolist(),
                "noise": noise.tolist(),
                "deviation_in_noise_units": excess.tolist(),
            }
        )
    first = ((other[0] - reference[0]).abs() / reference[0].abs().clamp_min(1e-3)).max()
    return {
        "losses": list(LOSS_NAMES),
        "finite": bool(torch.isfinite(other).all()),
        "within_noise": worst <= 1.0 and bool(torch.isfinite(other).all()),
        "max_deviation_in_noise_units": worst,
        "first_step_max_rel_diff": float(first),
        "windows": rows,
    }


def loss_check(
    specs: list[BenchConfig], shape: Shape, device: torch.device, iters: int, seed: int = 0
) -> dict:
    """Loss curves of the batch-1 configurations against eager fp32 batch 1 over `iters`
    iterations."""
    data = synthetic_batches(iters, 1, shape.size, seed)
    reference = loss_curve(BASELINE, shape, device, data, seed)
    report = {
        "iterations": iters,
        "data": "colorshift synthetic pair, same images and order for every configuration",
        # For scale: eager fp32 itself from other initial weights, i.e. what seed-to-seed noise
        # looks like.
        "seed_control": compare_curves(
            reference, loss_curve(BASELINE, shape, device, data, seed + 1)
        ),
        "configs": {},
    }
    for spec in specs:
        if spec.batch == 1 and spec != BASELINE:
            report["configs"][spec.name] = compare_curves(
                reference, loss_curve(spec, shape, device, data, seed)
            )
    return report


# -- the whole benchmark ---------------------------------------------------------------------------
def device_description(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return (
        f"cpu ({os.cpu_count()} cores, {platform.machine()}, {torch.get_num_threads()} torch "
        f"threads)"
    )


def run_bench(
    shape: Shape,
    device: torch.device,
    configs: list[BenchConfig],
    iters: int,
    warmup: int,
    loader_workers: int | None = None,
    loss_iters: int = 0,
    on_result=None,
) -> dict:
    """Measure `configs` in order; speed-ups are against the first (eager fp32 batch 1 in
    `default_configs`). `on_result(result)` is called after each configuration (the CLI prints rows
    as they come)."""
    flops = {batch: count_flops(shape, batch) for batch in sorted({c.batch for c in configs})}
    results = []
    for spec in configs:
        result = measure(spec, shape, device, iters, warmup)
        result["tflops"] = flops[spec.batch] / (result["ms_per_iter"] / 1e3) / 1e12
        result["speedup"] = result["pairs_per_s"] / results[0]["pairs_per_s"] if results else 1.0
        results.append(result)
        if on_result:
            on_result(result)
    report = {
        "device": device_description(device),
        "device_type": device.type,
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version() if device.type == "cuda" else None,
        "python": platform.python_version(),
        "size": shape.size,
        "blocks": shape.blocks,
        "ngf": shape.ngf,
        "ndf": shape.ndf,
        "iters": iters,
        "warmup": warmup,
        "peak_memory_kind": results[0]["peak_memory_kind"],
        "flops_per_iter": {str(b): f for b, f in flops.items()},
        "configs": results,
        "targets": targets(results, shape, device),
    }
    if loader_workers is not None:
        best = max(results, key=lambda r: r["pairs_per_s"])
        loader = measure_loader(shape.size, best["batch"], loader_workers, device)
        # With parallel workers the loop waits only if the loader is slower than the step.
        loader["share_of_step_time"] = best["pairs_per_s"] / loader["pairs_per_s"]
        loader["against"] = best["name"]
        report["loader"] = loader
    if loss_iters:
        report["loss_check"] = loss_check(configs, shape, device, loss_iters)
    return report


def targets(results: list[dict], shape: Shape, device: torch.device) -> dict:
    batch1 = max((r for r in results if r["batch"] == 1), key=lambda r: r["speedup"])
    best = max(results, key=lambda r: r["speedup"])
    return {
        "applies_to": "one H100, 256x256, 9 blocks",
        "this_run_applies": device.type == "cuda" and (shape.size, shape.blocks) == (256, 9),
        "batch1_best": batch1["name"],
        "batch1_speedup": batch1["speedup"],
        "batch1_target": BATCH1_TARGET,
        "best": best["name"],
        "best_speedup": best["speedup"],
        "throughput_target": THROUGHPUT_TARGET,
        "met": batch1["speedup"] >= BATCH1_TARGET and best["speedup"] >= THROUGHPUT_TARGET,
    }
