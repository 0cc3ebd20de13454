"""The fast path never takes a trial down: when torch.compile fails, at the first step or at a later
one, the run goes on with the plain eager step from the same state, says why once, and records it.

The failure is injected on CPU: `torch.compile` is replaced by a wrapper that runs the module as it
is (so a run that never fails is the reference, bit for bit) and raises at a chosen call."""

from __future__ import annotations

import json
import logging

import pytest
import torch
from torch import nn

from cyclegan.config import TrainConfig
from cyclegan.metric_names import FALLBACK_METRIC, FALLBACK_REASON
from cyclegan.model import CycleGAN
from cyclegan.speed import apply_speed_options


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny networks: one thread is as fast, and does not crawl when the other core is busy."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class FailingCompile(nn.Module):
    """What torch.compile returns (the module under `_orig_mod`), failing at call `fail_at`."""

    def __init__(self, module: nn.Module, fail_at: int | None):
        super().__init__()
        self._orig_mod, self.fail_at, self.calls = module, fail_at, 0

    def forward(self, *args, **kwargs):
        self.calls += 1
        if self.calls == self.fail_at:
            raise RuntimeError("injected: inductor could not compile this graph\nsecond line")
        return self._orig_mod(*args, **kwargs)


def _inject(monkeypatch, group: str | None, at_call: int | None) -> None:
    """Fail the compiled `group` ('generators', 'discriminators') at its `at_call`-th call."""

    def fake_compile(module, mode=None):
        name = {"GeneratorPair": "generators", "DiscriminatorPair": "discriminators"}.get(
            type(module).__name__, "frozen"
        )
        return FailingCompile(module, at_call if name == group else None)

    monkeypatch.setattr(torch, "compile", fake_compile)


def _config(**overrides) -> TrainConfig:
    values = dict(
        netG="resnet_2blocks",
        ngf=8,
        ndf=8,
        load_size=32,
        crop_size=32,
        compile="default",
        device="cpu",
        seed=0,
    )
    values.update(overrides)
    return TrainConfig(**values)


def _train(steps: int) -> tuple[CycleGAN, list[dict]]:
    torch.manual_seed(0)
    model = CycleGAN(_config())
    options = apply_speed_options(model, _config(), torch.device("cpu"))
    assert options.compile == "default"
    batches = torch.Generator().manual_seed(1)
    losses = [
        model.train_step(
            torch.rand(1, 3, 32, 32, generator=batches) * 2 - 1,
            torch.rand(1, 3, 32, 32, generator=batches) * 2 - 1,
        )
        for _ in range(steps)
    ]
    return model, losses


def _same_state(a: CycleGAN, b: CycleGAN) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    for name in sa["nets"]:
        for key, value in sa["nets"][name].items():
            assert torch.equal(value, sb["nets"][name][key]), f"{name}.{key} differs"
    for opt in ("opt_G", "opt_D"):
        for index, state in sa[opt]["state"].items():
            for key, value in state.items():
                assert torch.equal(
                    torch.as_tensor(value), torch.as_tensor(sb[opt]["state"][index][key])
                ), f"{opt}[{index}].{key} differs"
    for pool in ("pool_A", "pool_B"):
        assert torch.equal(sa[pool]["images"], sb[pool]["images"]) and torch.equal(
            sa[pool]["generator"], sb[pool]["generator"]
        )


# (group that fails, at which of its calls = which step): the first step, and a later one after the
# generators already stepped in that same step (the discriminators' part is all that is left).
FAILURES = [("generators", 1), ("discriminators", 1), ("generators", 3), ("discriminators", 3)]
STEPS = 3


@pytest.fixture(scope="module")
def reference():
    """A run on the (injected) fast path that never fails."""
    with pytest.MonkeyPatch.context() as monkeypatch:
        _inject(monkeypatch, None, None)
        model, losses = _train(STEPS)
    assert model.fast_path_fallback is None and model.compiled
    return model, losses


@pytest.mark.parametrize("group,at_call", FAILURES)
def test_a_compile_failure_continues_eagerly_from_the_same_state(
    monkeypatch, caplog, reference, group, at_call
):
    reference, reference_losses = reference
    _inject(monkeypatch, group, at_call)
    with caplog.at_level(logging.WARNING, logger="cyclegan"):
        model, losses = _train(STEPS)
    assert not model.compiled  # plain modules from then on
    assert model.fast_path_fallback.startswith(
        "torch.compile failed: RuntimeError: injected: inductor could not compile"
    )
    assert "second line" not in model.fast_path_fallback
    warnings = [
        r for r in caplog.records if "continuing with the plain eager step" in r.getMessage()
    ]
    assert len(warnings) == 1
    # No step lost or repeated: the same weights, optimizer state, pools and losses as a run that
    # never failed.
    _same_state(model, reference)
    for got, want in zip(losses, reference_losses):
        assert all(torch.equal(got[k], want[k]) for k in want)


def test_a_real_error_in_the_step_still_fails(monkeypatch):
    """The eager retry is the real step: an error that is not the fast path's propagates."""
    _inject(monkeypatch, None, None)
    torch.manual_seed(0)
    model = CycleGAN(_config())
    apply_speed_options(model, _config(), torch.device("cpu"))
    with pytest.raises(RuntimeError):
        model.train_step(
            torch.zeros(1, 3, 32, 32), torch.zeros(1, 5, 32, 32)
        )  # 5 channels: wrong input


def test_the_trainer_records_the_fallback_in_metrics_jsonl(monkeypatch, tiny_dataset, tmp_path):
    from conftest import tiny_config
    from cyclegan.trainer import Trainer

    _inject(monkeypatch, "discriminators", 2)
    cfg = tiny_config(
        tiny_dataset, tmp_path, compile="default", max_dataset_size=3, n_samples=0, n_epochs_decay=1
    )
    Trainer(cfg, show_progress=False).fit()
    rows = [
        json.loads(line) for line in (tmp_path / "tiny" / "metrics.jsonl").read_text().splitlines()
    ]
    assert [r[FALLBACK_METRIC] for r in rows] == [1, 1]
    assert all(
        r[FALLBACK_REASON].startswith("torch.compile failed: RuntimeError: injected") for r in rows
    )
    assert all(r["iterations"] == 3 for r in rows)


def test_a_run_that_keeps_its_fast_path_records_0(monkeypatch, tiny_dataset, tmp_path):
    from conftest import tiny_config
    from cyclegan.trainer import Trainer

    _inject(monkeypatch, None, None)
    cfg = tiny_config(
        tiny_dataset, tmp_path, compile="default", max_dataset_size=2, n_samples=0, n_epochs_decay=0
    )
    metrics = Trainer(cfg, show_progress=False).fit()
    assert metrics[FALLBACK_METRIC] == 0 and FALLBACK_REASON not in metrics
