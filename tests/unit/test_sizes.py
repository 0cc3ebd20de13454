"""orchestrator.config.sizes: the searched size options, checked combination by combination without
a TrainConfig each."""

from __future__ import annotations

import itertools
import re

import pytest

import cyclegan.config
from cyclegan.config import TrainConfig
from cyclegan.errors import UserError
from orchestrator.config.sizes import MAX_COMBINATIONS, SIZE_OPTIONS, combined_config
from orchestrator.config.space import Distribution


def _every_trainconfig(train: dict, space: dict) -> str | None:
    """What TrainConfig says of the first bad combination, building one per combination (the check's
    reference)."""
    axes = {k: Distribution.of(v).values() for k, v in space.items() if k in SIZE_OPTIONS}
    for combo in itertools.islice(itertools.product(*axes.values()), MAX_COMBINATIONS):
        sampled = dict(zip(axes, combo))
        try:
            TrainConfig(**{**train, **sampled})
        except UserError as err:
            option, detail = re.match(r"^--(\w+): (.*)$", str(err), re.S).groups()
            chosen = (
                f" (when the search picks {', '.join(f'{k}={v}' for k, v in sampled.items())})"
                if sampled
                else ""
            )
            return f"{option}: {detail}{chosen}"
    return None


SPACES = [
    ({}, {"crop_size": {"choice": [128, 256, 300]}}),
    (
        {"load_size": 200},
        {"crop_size": {"randint": [64, 512]}, "netG": {"choice": ["unet_128", "resnet_9blocks"]}},
    ),
    (
        {"preprocess": "scale_width"},
        {"load_size": {"quniform": [16, 700, 4]}, "netD": {"choice": ["basic", "pixel"]}},
    ),
    (
        {},
        {
            "netD": {"choice": ["basic", "n_layers"]},
            "n_layers_D": {"randint": [1, 8]},
            "crop_size": {"choice": [32, 64, 256]},
        },
    ),
    (
        {},
        {
            "preprocess": {"choice": ["resize_and_crop", "crop", "none"]},
            "load_size": {"choice": [128, 286]},
            "crop_size": {"choice": [256, 128]},
        },
    ),
    ({"crop_size": 100}, {"lr": {"uniform": [0.1, 0.2]}}),
    ({}, {"crop_size": {"grid": list(range(64, 2100, 4))}, "load_size": {"grid": [286, 4096]}}),
]


@pytest.mark.parametrize("train,space", SPACES)
def test_the_combinations_are_reported_as_one_trainconfig_each_would_report_them(train, space):
    expected = _every_trainconfig(train, space)
    config, problems = combined_config(
        "tasks[0]", train, {k: f"tasks[0].train.{k}" for k in train}, space, "search.space"
    )
    found = [f"{p.path.rsplit('.', 1)[-1]}: {p.message}" for p in problems]
    assert found == ([expected] if expected else [])
    assert (config is None) == bool(expected)


def test_a_thousand_combinations_build_one_trainconfig(monkeypatch):
    built = []
    original = TrainConfig.__post_init__
    monkeypatch.setattr(
        cyclegan.config.TrainConfig,
        "__post_init__",
        lambda self: (built.append(self), original(self)),
    )
    space = {
        "crop_size": {"grid": [64 * k for k in range(1, 501)]},
        "load_size": {"choice": [32000, 40000]},
    }
    config, problems = combined_config("tasks[0]", {}, {}, space, "search.space")
    assert (
        problems == [] and built == [config] and (config.crop_size, config.load_size) == (64, 32000)
    )
