"""orchestrator.config.space: one registry of distribution kinds, read by the checks and by Tune's
distributions."""

from __future__ import annotations

import pytest

from orchestrator.config.space import (
    KINDS,
    Distribution,
    check_distribution,
    grid_points,
    grid_size,
)
from orchestrator.search.distributions import tune_distribution

# One valid entry per kind, on an option whose type it fits.
SPECS = {
    "choice": ("pool_size", {"choice": [0, 50]}),
    "grid": ("lambda_cyc", {"grid": [5.0, 10.0, 20.0]}),
    "uniform": ("lr", {"uniform": [1e-4, 3e-4]}),
    "loguniform": ("lr", {"loguniform": [1e-5, 1e-3]}),
    "randint": ("pool_size", {"randint": [10, 12]}),
    "quniform": ("batch_size", {"quniform": [1, 4, 1]}),
}


def test_every_kind_has_an_example():
    assert set(SPECS) == set(KINDS)


@pytest.mark.parametrize("kind", list(SPECS))
def test_every_kind_round_trips_from_the_manifest_to_tune_and_back(kind):
    name, spec = SPECS[kind]
    assert check_distribution(name, spec) == []
    distribution = Distribution.of(spec)
    assert distribution.kind is KINDS[kind] and distribution.args == spec[kind]
    domain = tune_distribution(spec)
    if KINDS[kind].grid_axis:
        assert domain == {"grid_search": spec[kind]}
        samples = spec[kind]
    else:
        samples = [domain.sample() for _ in range(200)]
    assert all(distribution.contains(v) for v in samples)
    values = distribution.values()
    if values is None:  # a continuous range
        assert KINDS[kind].values is None and len(set(samples)) > 100
    else:  # what Tune gives is what the combination checks try: the manifest's bounds are inclusive
        assert set(samples) == set(values)


def test_values_and_bounds_outside_a_distribution_are_not_in_it():
    assert not Distribution.of({"randint": [10, 12]}).contains(13)
    assert not Distribution.of({"choice": [0, 50]}).contains(True)
    assert Distribution.of({"choice": [10, 20]}).contains(10.0)  # 10 and 10.0 are the same λ
    assert not Distribution.of({"uniform": [0.1, 0.2]}).contains("0.15")


def test_only_grid_entries_are_axes_of_the_grid():
    space = {name: spec for name, spec in SPECS.values()} | {
        "netG": {"grid": ["resnet_6blocks", "unet_256"]}
    }
    assert grid_size(space) == 3 * 2
    assert grid_points(space)[:2] == [
        {"lambda_cyc": 5.0, "netG": "resnet_6blocks"},
        {"lambda_cyc": 5.0, "netG": "unet_256"},
    ]
    assert grid_size({}) == 1 and grid_points({}) == [{}]


def test_an_unknown_kind_is_refused_with_the_known_ones():
    (problem,) = check_distribution("lr", {"unifrom": [0.1, 0.2]})
    assert (
        problem.startswith(f"a distribution is one of {', '.join(KINDS)} (got unifrom)")
        and "did you mean 'uniform'" in problem
    )
    with pytest.raises(ValueError, match="unknown distribution 'unifrom'"):
        Distribution.of({"unifrom": [0.1, 0.2]})
