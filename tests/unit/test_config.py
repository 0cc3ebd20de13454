"""TrainConfig: one object per run, valid from its birth (constructor, from_dict, replace), and
frozen."""

from __future__ import annotations

import dataclasses

import pytest

from cyclegan.config import TrainConfig, option_problem
from cyclegan.errors import UserError


def test_a_bad_option_is_refused_when_the_config_is_built_naming_the_flag():
    with pytest.raises(UserError, match="^--lr: must be positive"):
        TrainConfig(lr=0)
    with pytest.raises(UserError, match="^--crop_size: 300 is larger than --load_size 286"):
        TrainConfig.from_dict({"crop_size": 300})
    with pytest.raises(UserError, match="^--netD: 'patch' is not one of basic, n_layers, pixel"):
        TrainConfig(netD="patch")


def test_replace_checks_the_new_config_again():
    cfg = TrainConfig(crop_size=128, load_size=143)
    assert cfg.replace(crop_size=64).crop_size == 64
    with pytest.raises(
        UserError, match="^--crop_size: 126 cannot go through --netG resnet_9blocks"
    ):
        cfg.replace(crop_size=126)


def test_a_config_cannot_be_changed_in_place():
    cfg = TrainConfig()
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.crop_size = 3  # type: ignore[misc]


def test_option_problem_checks_values_without_building_a_config():
    assert option_problem({"lr": 0.001}) is None
    assert option_problem({"lr": -1}) == ("lr", "must be positive")
    # Sizes are a relation between options: left out on request (the manifest checks them per
    # combination).
    assert option_problem({"crop_size": 250}) is not None
    assert option_problem({"crop_size": 250}, sizes=False) is None
