"""Speed options change how the step runs, never what it computes.

CPU: every combination that makes sense there (precision fp32/bf16 x channels-last) trains with
finite losses that follow the eager fp32 curve on the same data and seed; optimizer flavours
(fused, tensor learning rate) keep the schedule and a portable training state; DDP gets the
tuned buckets. GPU (skipped without CUDA): bf16 and the CUDA-graphed step match eager fp32 over
200 iterations, the graphed step resumes from a saved state and falls back to eager for an odd
batch.
"""

from __future__ import annotations

import copy

import pytest
import torch

from cyclegan.bench import (
    BASELINE,
    BenchConfig,
    Shape,
    build_model,
    compare_curves,
    loss_curve,
    synthetic_batches,
)
from cyclegan.config import TrainConfig
from cyclegan.errors import UserError
from cyclegan.metric_names import LOSS_NAMES
from cyclegan.model import CycleGAN
from cyclegan.speed import (
    DDP_BUCKET_MB,
    apply_speed_options,
    ddp_options,
    ddp_wrap,
    resolve_speed_options,
)

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
CPU = torch.device("cpu")
TINY = Shape(size=32, blocks=1, ngf=8, ndf=8)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """One torch thread (module-wide, so that the shared reference curve gets it too): on a loaded
    2-core machine OpenMP threads spinning against each other make these small steps 20x slower."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# -- resolving options --------------------------------------------------------------------------
def test_auto_is_plain_on_cpu_and_fast_on_cuda():
    cfg = TrainConfig()
    cpu = resolve_speed_options(cfg, CPU)
    assert (cpu.precision, cpu.channels_last, cpu.compile, cpu.cuda_graphs) == (
        "fp32",
        False,
        "none",
        False,
    ) and cpu.plain
    cuda = resolve_speed_options(cfg, torch.device("cuda"))  # resolving touches no device
    assert (cuda.precision, cuda.channels_last, cuda.compile, cuda.cuda_graphs) == (
        "bf16",
        True,
        "default",
        True,
    )
    assert not resolve_speed_options(
        cfg.replace(batch_size=8), torch.device("cuda")
    ).cuda_graphs  # graphs at batch 1
    assert resolve_speed_options(
        cfg.replace(batch_size=8, cuda_graphs="true"), torch.device("cuda")
    ).cuda_graphs


def test_options_that_cannot_work_are_user_errors():
    with pytest.raises(UserError, match="cuda_graphs true needs a CUDA device"):
        resolve_speed_options(TrainConfig(cuda_graphs="true"), CPU)
    with pytest.raises(UserError, match="fp16 needs a CUDA device"):
        resolve_speed_options(TrainConfig(precision="fp16"), CPU)
    with pytest.raises(UserError, match="does not work with --precision fp16"):
        resolve_speed_options(
            TrainConfig(precision="fp16", cuda_graphs="true"), torch.device("cuda")
        )
    # auto steps aside for fp16 instead of failing
    assert not resolve_speed_options(
        TrainConfig(precision="fp16"), torch.device("cuda")
    ).cuda_graphs


# -- the losses stay the paper's ----------------------------------------------------------------
ITERS = 60


@pytest.fixture(scope="module")
def cpu_reference():
    data = synthetic_batches(ITERS, 1, TINY.size, seed=0)
    return data, loss_curve(BASELINE, TINY, CPU, data)


CPU_COMBINATIONS = [
    BenchConfig("eager-fp32-cl", 1, channels_last=True),
    BenchConfig("eager-bf16", 1, precision="bf16"),
    BenchConfig("eager-bf16-cl", 1, precision="bf16", channels_last=True),
]


@pytest.mark.parametrize("spec", CPU_COMBINATIONS, ids=lambda s: s.kind)
def test_cpu_option_combinations_follow_the_eager_fp32_losses(spec, cpu_reference):
    data, reference = cpu_reference
    curve = loss_curve(spec, TINY, CPU, data)
    result = compare_curves(reference, curve)
    assert result["finite"]
    # Same weights and data: the first step differs only by arithmetic (bf16 rounding, kernel
    # order).
    assert result["first_step_max_rel_diff"] < (1e-4 if spec.precision == "fp32" else 5e-2)
    assert result["within_noise"], result["max_deviation_in_noise_units"]


def test_the_noise_criterion_catches_a_changed_objective(cpu_reference):
    """A control: halving the cycle weight is not 'within the noise'."""
    data, reference = cpu_reference
    model = build_model(BASELINE, TINY, CPU)
    model.cfg = model.cfg.replace(lambda_A=5.0, lambda_B=5.0)
    rows = []
    for a, b in data:
        losses = model.train_step(a, b)
        rows.append(torch.stack([losses[k] for k in LOSS_NAMES]))
    assert not compare_curves(reference, torch.stack(rows))["within_noise"]


def test_batched_generator_calls_compute_the_same_step():
    torch.manual_seed(0)
    plain = CycleGAN(TrainConfig(netG="resnet_1blocks", ngf=8, ndf=8, pool_size=0))
    batched = copy.deepcopy(plain)
    batched.generators.batched = True
    a, b = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1
    ours, theirs = plain.train_step(a, b), batched.train_step(a, b)
    for name in LOSS_NAMES:
        assert ours[name].item() == pytest.approx(theirs[name].item(), rel=1e-5, abs=1e-7), name


def test_batched_calls_stay_off_for_batch_norm():
    cfg = TrainConfig(netG="resnet_1blocks", ngf=8, ndf=8, norm="batch", channels_last="true")
    model = CycleGAN(cfg)
    apply_speed_options(model, cfg, CPU)
    assert not model.generators.batched  # batch statistics would change with the batch


# -- optimizers and the training state ----------------------------------------------------------
def test_tensor_learning_rate_follows_the_schedule_and_saves_as_a_number():
    cfg = TrainConfig(netG="resnet_1blocks", ngf=8, ndf=8, n_epochs=1, n_epochs_decay=3)
    a, b = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
    fused = CycleGAN(cfg)
    fused.configure_optimizers(fused=True)  # the CUDA fast path's flavour; CPU has fused Adam too
    assert isinstance(fused.opt_G.param_groups[0]["lr"], torch.Tensor)
    fused.train_step(a, b)
    fused.step_schedulers(0.0)  # after epoch 1 (constant) and epoch 2 (first decay): epoch 3's rate
    fused.step_schedulers(0.0)
    assert fused.learning_rate == pytest.approx(2e-4 * (1 - 2 / 4), rel=1e-6)

    state = fused.state_dict()
    assert isinstance(state["opt_G"]["param_groups"][0]["lr"], float)
    assert all(isinstance(v, float) for v in state["schedulers"][0]["base_lrs"])

    plain = CycleGAN(cfg)  # a plain run resumes a fast run's state, and the other way round
    plain.load_state_dict(state)
    assert isinstance(plain.opt_G.param_groups[0]["lr"], float) and not plain.opt_G.param_groups[
        0
    ].get("fused")
    assert plain.learning_rate == pytest.approx(fused.learning_rate)
    assert torch.isfinite(torch.stack(list(plain.train_step(a, b).values()))).all()
    again = CycleGAN(cfg)
    again.configure_optimizers(fused=True)
    again.load_state_dict(plain.state_dict())
    assert again.opt_G.param_groups[0]["fused"] and isinstance(
        again.opt_G.param_groups[0]["lr"], torch.Tensor
    )
    again.step_schedulers(0.0)
    assert again.learning_rate == pytest.approx(2e-4 * (1 - 3 / 4), rel=1e-6)


def test_ddp_gets_buckets_sized_for_each_network_group(tmp_path):
    import torch.distributed as dist

    cfg = TrainConfig(netG="resnet_1blocks", ngf=8, ndf=8, pool_size=0)
    dist.init_process_group(
        "gloo", init_method=f"file://{tmp_path / 'store'}", rank=0, world_size=1
    )
    try:
        torch.manual_seed(0)
        model = CycleGAN(cfg)
        reference = copy.deepcopy(model)
        apply_speed_options(model, cfg, CPU, wrap=ddp_wrap(CPU))
        assert model.train_generators.bucket_bytes_cap == DDP_BUCKET_MB["generators"] * 2**20
        assert (
            model.train_discriminators.bucket_bytes_cap == DDP_BUCKET_MB["discriminators"] * 2**20
        )
        assert ddp_options(model.generators)["gradient_as_bucket_view"]
        a, b = torch.rand(1, 3, 32, 32), torch.rand(1, 3, 32, 32)
        for _ in range(2):  # one process: DDP must not change a single number
            ours, theirs = model.train_step(a, b), reference.train_step(a, b)
            for name in LOSS_NAMES:
                assert ours[name].item() == pytest.approx(
                    theirs[name].item(), rel=1e-5, abs=1e-7
                ), name
    finally:
        dist.destroy_process_group()


# -- the graphed step's logic, on CPU --------------------------------------------------------------
class RerunGraph:
    """Stands in for a captured CUDA graph on CPU: replay() runs the captured function again and
    writes its results into the outputs of the 'capture', as a real replay writes into the same
    memory."""

    def __init__(self, fn, args, outputs):
        self.fn, self.args, self.outputs = fn, args, outputs

    def pool(self):
        return None

    def replay(self):
        def write(static, fresh):
            if isinstance(static, torch.Tensor):
                with torch.no_grad():
                    static.copy_(fresh)
            elif isinstance(static, dict):
                for k in static:
                    write(static[k], fresh[k])
            else:
                for a, b in zip(static, fresh):
                    write(a, b)

        write(self.outputs, self.fn(*self.args))


class FakeStream:
    def wait_stream(self, other):
        pass


def test_graphed_step_logic_matches_the_eager_step(monkeypatch):
    """Warm-up calls, capture, replays with the pools choosing in between, an odd batch, and a reset
    after loading a state: the same losses as the eager step. (Capture itself needs a GPU.)"""
    from contextlib import nullcontext

    import cyclegan.speed as speed

    def capture_part(fn, *args, pool=None):
        # A real capture runs nothing: run it for its outputs, then undo what it changed.
        nets = {name: copy.deepcopy(net.state_dict()) for name, net in graphed.nets.items()}
        optimizers = [copy.deepcopy(opt.state_dict()) for opt in (graphed.opt_G, graphed.opt_D)]
        outputs = fn(*args)
        for name, net in graphed.nets.items():
            net.load_state_dict(nets[name])
        for opt, state in zip((graphed.opt_G, graphed.opt_D), optimizers):
            opt.load_state_dict(state)
        return RerunGraph(fn, args, outputs), outputs

    monkeypatch.setattr(torch.cuda, "Stream", lambda *a, **k: FakeStream())
    monkeypatch.setattr(torch.cuda, "current_stream", lambda *a, **k: FakeStream())
    monkeypatch.setattr(torch.cuda, "stream", lambda s: nullcontext())
    monkeypatch.setattr(torch.cuda, "device", lambda d: nullcontext())
    monkeypatch.setattr(speed.GraphedStep, "_capture_part", staticmethod(capture_part))

    torch.manual_seed(0)
    cfg = TrainConfig(netG="resnet_1blocks", ngf=8, ndf=8, pool_size=2)
    eager = CycleGAN(cfg)
    eager.generators.batched = True
    eager.configure_optimizers(
        fused=True
    )  # the graphed flavour's tensor learning rate (capturable needs a GPU)
    graphed = copy.deepcopy(eager)
    graphed.graphed_step = speed.GraphedStep(graphed)

    data = synthetic_batches(9, 2, 32, seed=0)  # 3 warm-up steps, the capture step, 5 replays
    for i, (a, b) in enumerate(data):
        ours, theirs = graphed.train_step(a, b), eager.train_step(a, b)
        for name in LOSS_NAMES:
            assert ours[name].item() == pytest.approx(theirs[name].item(), rel=1e-5, abs=1e-6), (
                i,
                name,
            )
            assert not ours[name].requires_grad, name
    assert graphed.graphed_step.graphs is not None and graphed.graphed_step.calls == 3
    odd = graphed.train_step(data[0][0][:1], data[0][1][:1])  # an epoch's smaller last batch: eager
    assert odd.keys() == set(LOSS_NAMES)
    graphed.load_state_dict(eager.state_dict())
    assert graphed.graphed_step.graphs is None  # new optimizer state tensors: capture again


# -- GPU ------------------------------------------------------------------------------------------
GPU_SHAPE = Shape(
    size=64, blocks=9
)  # the paper's networks, at a size that keeps 200 iterations short
GPU_ITERS = 200


@pytest.fixture(scope="module")
def gpu_reference():
    device = torch.device("cuda")
    data = synthetic_batches(GPU_ITERS, 1, GPU_SHAPE.size, seed=0)
    return device, data, loss_curve(BASELINE, GPU_SHAPE, device, data)


@needs_cuda
@pytest.mark.gpu
@pytest.mark.parametrize(
    "spec",
    [
        BenchConfig("graphs-fp32", 1, cuda_graphs=True),
        BenchConfig("eager-bf16-cl", 1, precision="bf16", channels_last=True),
        BenchConfig("graphs-bf16-cl", 1, precision="bf16", channels_last=True, cuda_graphs=True),
        BenchConfig(
            "compiled-graphs-bf16-cl",
            1,
            precision="bf16",
            channels_last=True,
            compile="default",
            cuda_graphs=True,
        ),
    ],
    ids=lambda s: s.kind,
)
def test_gpu_fast_paths_match_eager_fp32_over_200_iterations(spec, gpu_reference):
    device, data, reference = gpu_reference
    result = compare_curves(reference, loss_curve(spec, GPU_SHAPE, device, data))
    assert result["finite"]
    assert result["first_step_max_rel_diff"] < (
        1e-2 if spec.precision == "fp32" else 5e-2
    )  # TF32 convolutions
    assert result["within_noise"], result["max_deviation_in_noise_units"]


@needs_cuda
@pytest.mark.gpu
def test_graphed_step_resumes_from_a_saved_state_and_handles_an_odd_batch():
    device = torch.device("cuda")
    spec = BenchConfig("graphs-bf16-cl", 2, precision="bf16", channels_last=True, cuda_graphs=True)
    data = synthetic_batches(12, 2, 32, seed=0)
    model = build_model(spec, TINY, device)
    assert model.graphed_step is not None and model.opt_G.param_groups[0]["capturable"]
    to = lambda x: x.to(device, memory_format=model.memory_format)  # noqa: E731
    for a, b in data[:6]:  # 3 warm-up steps, capture, replays
        model.train_step(to(a), to(b))
    assert model.graphed_step.graphs is not None
    odd = model.train_step(
        to(data[6][0][:1]), to(data[6][1][:1])
    )  # an epoch's smaller last batch: eager
    assert torch.isfinite(torch.stack(list(odd.values()))).all()
    state = model.state_dict()
    assert isinstance(state["opt_G"]["param_groups"][0]["lr"], float)

    resumed = build_model(spec, TINY, device)
    resumed.load_state_dict(state)
    assert resumed.opt_G.param_groups[0]["capturable"]
    assert (
        resumed.opt_G.state[next(iter(resumed.generators.parameters()))]["step"].device.type
        == "cuda"
    )
    for a, b in data[7:]:  # both continue identically: warm-up and capture are real steps
        ours, theirs = model.train_step(to(a), to(b)), resumed.train_step(to(a), to(b))
        for name in LOSS_NAMES:
            assert ours[name].item() == pytest.approx(theirs[name].item(), rel=2e-2, abs=1e-3), name
    plain = CycleGAN(
        resumed.cfg.replace(precision="fp32", channels_last="false", cuda_graphs="false"), device
    )
    plain.load_state_dict(resumed.state_dict())  # and a plain run can take over from a graphed one
    assert torch.isfinite(torch.stack(list(plain.train_step(to(a), to(b)).values()))).all()
