"""The public API (`import orchestrator`): each name resolves, and the import itself stays cheap."""

from __future__ import annotations

from pathlib import Path

import pytest

import orchestrator
from conftest import loaded_after

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name", orchestrator.__all__)
def test_each_public_name_resolves_to_what_its_module_defines(name):
    import importlib

    module = importlib.import_module(orchestrator._PUBLIC[name])
    assert getattr(orchestrator, name) is getattr(module, name)
    assert name in dir(orchestrator)


def test_the_api_names_the_entry_points():
    assert {
        "load_manifest",
        "run_experiment",
        "train_on_ray",
        "load_results",
        "TrialSpec",
        "RunOptions",
    } <= set(orchestrator.__all__)


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nothing_here'"):
        orchestrator.nothing_here  # noqa: B018


def test_importing_orchestrator_loads_no_ray_torch_or_mlflow():
    assert loaded_after("import orchestrator", ("ray", "torch", "mlflow")) == []
