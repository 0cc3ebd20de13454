"""The cluster configs (cluster/) and the ready manifests (experiments/) are valid and agree with
pyproject.toml: what `ray up`, `kubectl apply` and `ray job submit` would be given is checked here,
without a cloud, a Kubernetes cluster, Ray or a server."""

from __future__ import annotations

import copy
import importlib.metadata
import os
import re
import shlex
import subprocess
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement
from packaging.version import Version

from orchestrator.config.plan import load_manifest

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10: pytest brings tomli there
    import tomli as tomllib

REPO = Path(__file__).resolve().parents[2]
CLUSTER = REPO / "cluster"
AWS = CLUSTER / "aws.yaml"
RAYCLUSTER = CLUSTER / "kuberay" / "raycluster.yaml"
RAYJOB = CLUSTER / "kuberay" / "rayjob.yaml"
RUNTIME_ENV = CLUSTER / "runtime_env.yaml"
SUBMIT = CLUSTER / "submit.sh"
DOC = REPO / "docs" / "cluster.md"
PAPER_DATASETS = ("horse2zebra", "summer2winter_yosemite", "monet2photo", "apple2orange", "maps")
YAML_FILES = sorted(
    [*CLUSTER.rglob("*.yaml"), *CLUSTER.rglob("*.yml"), *(REPO / "experiments").glob("*.yaml")]
)
MANIFESTS = sorted((REPO / "experiments").glob("*.yaml"))
# Environment a job needs from its surroundings, never written into a config as a literal.
SECRETS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "RAY_AUTH_TOKEN")
IMAGE_TAG = re.compile(r"rayproject/ray:(?P<ray>\d+\.\d+\.\d+)-py(?P<py>\d)(?P<minor>\d+)")


def _load(path: Path) -> dict:
    data = yaml.safe_load(path.read_text())
    assert isinstance(data, dict), f"{path}: not a YAML mapping"
    return data


def _pyproject() -> dict:
    return tomllib.loads((REPO / "pyproject.toml").read_text())


def _constraints() -> dict[str, Requirement]:
    return {
        Requirement(dep).name: Requirement(dep) for dep in _pyproject()["project"]["dependencies"]
    }


def _kuberay_specs() -> dict[str, dict]:
    """The RayCluster spec of each KubeRay file (a RayJob carries its own in rayClusterSpec)."""
    return {
        RAYCLUSTER.name: _load(RAYCLUSTER)["spec"],
        RAYJOB.name: _load(RAYJOB)["spec"]["rayClusterSpec"],
    }


def _containers(spec: dict) -> list[tuple[str, dict]]:
    groups = [("head", spec["headGroupSpec"])] + [
        (g["groupName"], g) for g in spec.get("workerGroupSpecs", [])
    ]
    return [(name, c) for name, group in groups for c in group["template"]["spec"]["containers"]]


# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("path", YAML_FILES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_cluster_config_and_manifest_is_one_yaml_mapping(path):
    _load(path)


def test_the_cluster_folder_and_the_paper_manifests_are_all_there():
    for path in (AWS, RAYCLUSTER, RAYJOB, RUNTIME_ENV, SUBMIT, DOC):
        assert path.is_file(), f"{path.relative_to(REPO)} is missing"
    for name in ("quickstart", *PAPER_DATASETS):
        assert (REPO / "experiments" / f"{name}.yaml").is_file(), (
            f"experiments/{name}.yaml is missing"
        )


# ------------------------------------------------------------------------------------------------
# The AWS cluster launcher


def test_aws_config_has_a_cpu_head_and_gpu_workers_that_scale_from_zero():
    config = _load(AWS)
    assert config["cluster_name"]
    assert config["provider"]["type"] == "aws" and config["provider"]["region"]
    types = config["available_node_types"]
    head = types[config["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0 and head["resources"].get("CPU", 0) >= 1, (
        "the head hosts the drivers: CPUs, and no GPU so that no training worker lands on it"
    )
    gpu_types = {name: t for name, t in types.items() if t.get("resources", {}).get("GPU", 0) >= 1}
    assert "gpu_workers" in gpu_types
    for name, node_type in gpu_types.items():
        assert node_type["min_workers"] == 0, f"{name}: GPU nodes scale from 0"
        assert node_type["max_workers"] <= config["max_workers"]
        assert "IamInstanceProfile" in node_type["node_config"], (
            f"{name}: needs an instance profile for S3"
        )
    assert types["gpu_workers"]["max_workers"] >= 1
    spot = [
        t
        for t in gpu_types.values()
        if t["node_config"].get("InstanceMarketOptions", {}).get("MarketType") == "spot"
    ]
    assert spot, "spot GPU workers are offered (InstanceMarketOptions)"
    assert "IamInstanceProfile" in head["node_config"]


def test_aws_config_installs_the_project_on_every_node():
    config = _load(AWS)
    commands = " && ".join(
        config["setup_commands"]
    )  # setup_commands run on every node, head and workers
    mounted = [remote for remote, local in config["file_mounts"].items() if local in (".", "./")]
    assert mounted, "the project (the directory `ray up` runs in) is synced to the nodes"
    assert any(
        re.search(rf"pip install [^&]*{re.escape(remote)}(\s|$)", commands) for remote in mounted
    ), f"setup_commands do not pip install the synced project {mounted}: {commands}"
    excluded = set(config.get("rsync_exclude", []))
    assert {".venv", ".git", "runs", "mlruns"} <= excluded


def test_aws_config_passes_rays_own_schema():
    from ray.autoscaler._private.util import prepare_config, validate_config

    validate_config(prepare_config(copy.deepcopy(_load(AWS))))


def test_aws_nodes_and_job_submission_share_the_token():
    config = _load(AWS)
    assert config["file_mounts"].get("~/.ray/auth_token") == "~/.ray/auth_token"
    for key in ("head_start_ray_commands", "worker_start_ray_commands"):
        start = [c for c in config[key] if "ray start" in c]
        assert start and all("RAY_AUTH_MODE=token" in c for c in start), (
            f"{key}: start Ray with token authentication"
        )


# ------------------------------------------------------------------------------------------------
# KubeRay


def test_kuberay_objects_have_kind_version_and_a_gpu_worker_group():
    assert (
        _load(RAYCLUSTER)["apiVersion"] == "ray.io/v1" and _load(RAYCLUSTER)["kind"] == "RayCluster"
    )
    assert _load(RAYJOB)["apiVersion"] == "ray.io/v1" and _load(RAYJOB)["kind"] == "RayJob"
    for name, spec in _kuberay_specs().items():
        head = spec["headGroupSpec"]["template"]["spec"]["containers"][0]
        assert "nvidia.com/gpu" not in head.get("resources", {}).get("limits", {}), (
            f"{name}: the head has no GPU"
        )
        gpu_groups = [
            g
            for g in spec["workerGroupSpecs"]
            if int(
                g["template"]["spec"]["containers"][0]["resources"]["limits"].get(
                    "nvidia.com/gpu", 0
                )
            )
            >= 1
        ]
        assert gpu_groups, f"{name}: no worker group with nvidia.com/gpu limits"
        for group in gpu_groups:
            assert group["minReplicas"] == 0 and group["maxReplicas"] >= 1, (
                f"{name}: GPU workers scale from 0"
            )
        assert spec.get("enableInTreeAutoscaling") is True, (
            f"{name}: the autoscaler grows the GPU group"
        )
        assert spec.get("authOptions", {}).get("mode") == "token", f"{name}: token authentication"


def test_kuberay_takes_tracking_and_s3_settings_from_kubernetes_objects_not_inline():
    for name, spec in _kuberay_specs().items():
        for group, container in _containers(spec):
            env = {e["name"]: e for e in container.get("env", [])}
            for key in ("MLFLOW_TRACKING_URI", "AWS_ENDPOINT_URL_S3"):
                assert key in env, f"{name} {group}: {key} is not set"
                assert "value" not in env[key] and set(env[key]["valueFrom"]) & {
                    "configMapKeyRef",
                    "secretKeyRef",
                }, f"{name} {group}: {key} must come from a ConfigMap or Secret"
            for key in SECRETS:
                assert "value" not in env.get(key, {}), f"{name} {group}: {key} written inline"


def test_rayjob_entrypoint_runs_a_manifest_from_experiments():
    entrypoint = shlex.split(_load(RAYJOB)["spec"]["entrypoint"])
    assert entrypoint[:4] == ["python", "-m", "orchestrator", "run"], entrypoint
    manifest = REPO / entrypoint[4]
    assert entrypoint[4].startswith("experiments/") and manifest.is_file(), (
        f"{entrypoint[4]}: not a file of experiments/"
    )
    load_manifest(manifest)


# ------------------------------------------------------------------------------------------------
# The runtime env and the submit line


def test_runtime_env_ships_the_code_and_leaves_environments_data_and_outputs_behind():
    from ray._private.runtime_env.packaging import (
        _get_excludes,
    )  # the matcher Ray applies to `excludes`

    runtime_env = _load(RUNTIME_ENV)
    assert runtime_env["working_dir"] == "."
    assert {"MLFLOW_TRACKING_URI", "AWS_ENDPOINT_URL_S3"} <= set(runtime_env["env_vars"])
    assert not set(SECRETS) & set(runtime_env["env_vars"]), (
        "credentials do not belong in the runtime env"
    )
    excluded = _get_excludes(REPO, runtime_env["excludes"])
    for path in (
        ".venv/bin/python",
        ".git/HEAD",
        "runs/quickstart/trials/x",
        "results/quickstart.json",
        "mlruns/0/meta.yaml",
        "mlflow.db",
        "checkpoints/h2z/latest_net_G_A.pth",
        "data/horse2zebra/trainA/1.jpg",
        "datasets/maps.zip",
        "demo/data/trainA/00000.png",
    ):
        assert excluded(REPO / path), f"{path} would be uploaded with every job"
    for path in (
        "orchestrator/commands/__init__.py",
        "cyclegan/networks.py",
        "experiments/horse2zebra.yaml",
        "cluster/runtime_env.yaml",
        "pyproject.toml",
    ):
        assert not excluded(REPO / path), f"{path} would be left out of the job's working dir"


def test_submit_script_runs_the_documented_ray_job_submit_line():
    assert os.access(SUBMIT, os.X_OK), "cluster/submit.sh is not executable"
    env = {
        **os.environ,
        "DRY_RUN": "1",
        "SUBMISSION_ID": "h2z-1",
        "RAY_ADDRESS": "http://10.0.0.5:8265",
        "RAY_AUTH_MODE": "token",
    }
    env.pop("RUNTIME_ENV", None)
    result = subprocess.run(
        ["bash", str(SUBMIT), "experiments/horse2zebra.yaml", "--resume"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == (
        "+ ray job submit --address http://10.0.0.5:8265 --submission-id h2z-1 --working-dir . "
        "--runtime-env cluster/runtime_env.yaml -- python -m orchestrator run "
        "experiments/horse2zebra.yaml --resume"
    )
    missing = subprocess.run(
        ["bash", str(SUBMIT), "experiments/no-such.yaml"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert missing.returncode == 2 and "no such manifest" in missing.stderr


# ------------------------------------------------------------------------------------------------
# Versions


def _pins() -> list[tuple[str, Requirement]]:
    """Every `name==version` the AWS setup commands install, with where it was found."""
    pins = []
    for command in _load(AWS)["setup_commands"]:
        for word in shlex.split(command):
            if "==" in word:
                pins.append((f"{AWS.name} setup_commands", Requirement(word)))
    return pins


def _ray_versions() -> list[tuple[str, str]]:
    """(where, version) of every Ray version the configs and the guide name."""
    found = [
        (f"{AWS.name} setup_commands", str(next(iter(r.specifier)).version))
        for _, r in _pins()
        if r.name == "ray"
    ]
    docker = _load(AWS).get("docker", {})
    for key in ("image", "head_image", "worker_image"):
        if key in docker:
            found.append((f"{AWS.name} docker.{key}", IMAGE_TAG.search(docker[key])["ray"]))
    for name, spec in _kuberay_specs().items():
        found.append((f"{name} rayVersion", str(spec["rayVersion"])))
    found += [(f"{DOC.name} Dockerfile", m["ray"]) for m in IMAGE_TAG.finditer(DOC.read_text())]
    return found


def test_setup_pins_ray_torch_and_mlflow_within_pyproject_constraints():
    constraints = _constraints()
    pins = {r.name: (where, r) for where, r in _pins()}
    for name in ("ray", "torch", "mlflow"):
        assert name in pins, f"{AWS.name}: setup_commands do not pin {name}"
    for name, (where, requirement) in pins.items():
        if name not in constraints:
            continue
        version = next(iter(requirement.specifier)).version
        assert constraints[name].specifier.contains(version, prereleases=True), (
            f"{where}: {name}=={version} is outside pyproject.toml's {constraints[name]}"
        )
        assert constraints[name].extras <= requirement.extras, (
            f"{where}: {name} without the extras pyproject.toml asks for "
            f"({', '.join(sorted(constraints[name].extras))})"
        )


def test_every_ray_version_named_is_one_version_within_pyproject_and_installed_here():
    found = _ray_versions()
    assert len(found) >= 5, found
    versions = {version for _, version in found}
    assert len(versions) == 1, f"the configs name different Ray versions: {found}"
    version = versions.pop()
    assert _constraints()["ray"].specifier.contains(version), (
        f"Ray {version} is outside pyproject.toml's {_constraints()['ray']}"
    )
    assert Version(importlib.metadata.version("ray")) == Version(version), (
        f"the configs name Ray {version}, but this project is developed and tested with "
        f"{importlib.metadata.version('ray')}"
    )


def test_ray_images_have_a_python_the_project_supports():
    requires = _pyproject()["project"]["requires-python"]
    texts = [AWS.read_text(), DOC.read_text()]
    tags = [m for text in texts for m in IMAGE_TAG.finditer(text)]
    assert tags
    from packaging.specifiers import SpecifierSet

    for tag in tags:
        assert SpecifierSet(requires).contains(f"{tag['py']}.{tag['minor']}"), (
            f"{tag[0]}: Python outside {requires}"
        )


def test_kuberay_image_tag_is_the_project_version():
    version = _pyproject()["project"]["version"]
    for name, spec in _kuberay_specs().items():
        for group, container in _containers(spec):
            assert container["image"].endswith(f"cyclegan-orchestrator:{version}"), (
                f"{name} {group}: {container['image']}"
            )


# ------------------------------------------------------------------------------------------------
# The manifests


@pytest.mark.parametrize("path", MANIFESTS, ids=lambda p: p.name)
def test_every_experiment_manifest_validates(path):
    loaded = load_manifest(path)  # offline: datasets are not fetched
    assert loaded.plans


@pytest.mark.parametrize("name", PAPER_DATASETS)
def test_paper_manifests_use_the_papers_settings_on_s3_and_gpus(name):
    loaded = load_manifest(REPO / "experiments" / f"{name}.yaml")
    manifest = loaded.manifest
    assert manifest.storage and manifest.storage.startswith("s3://")
    (plan,) = loaded.plans
    assert plan.data == f"s3://YOUR-BUCKET/datasets/{name}.zip"
    paper = {
        "netG": "resnet_9blocks",
        "n_epochs": 100,
        "n_epochs_decay": 100,
        "load_size": 286,
        "crop_size": 256,
        "batch_size": 1,
    }
    assert {k: plan.train.get(k) for k in paper} == paper
    assert plan.resources.gpus_per_worker == 1
    assert plan.space, "a search space"
    scheduler = plan.search.scheduler
    assert scheduler.type == "asha" and 1 < scheduler.grace_period <= 25
    expected_metric = "psnr" if name == "maps" else "fid"
    assert plan.search.metric == expected_metric
    # the paper's setting runs first, and the summary measures the sweep against it
    assert (
        plan.baseline_added
        and plan.baseline["lambda_cyc"] == 10
        and plan.trial_count == plan.search.num_samples + 1
    )
    assert plan.baseline.get("lambda_idt", plan.train["lambda_identity"]) == (
        0.5 if name == "monet2photo" else 0.0
    )
    if name == "monet2photo":
        assert plan.train["lambda_identity"] == 0.5 and "lambda_idt" not in plan.space
    if name == "maps":
        assert {"l1", "psnr"} <= set(plan.train["eval_metrics"].split(","))


# ------------------------------------------------------------------------------------------------
# The guide says only what the CLIs accept


def _shell_blocks() -> list[str]:
    """The ```bash blocks of docs/cluster.md."""
    blocks, current, keep = [], [], None
    for line in DOC.read_text().splitlines():
        if not line.startswith("```"):
            if keep:
                current.append(line)
        elif keep is None:  # an opening fence
            keep, current = line.strip() in ("```bash", "```sh"), []
        else:  # the closing one
            if keep:
                blocks.append("\n".join(current))
            keep = None
    return blocks


def _doc_commands(prefix: str) -> list[list[str]]:
    """Every command in docs/cluster.md's shell blocks that starts with `prefix`, continuation lines
    joined."""
    commands = []
    for block in _shell_blocks():
        for line in block.replace("\\\n", " ").splitlines():
            line = line.split(" #", 1)[0].strip()
            start = line.find(prefix)
            if start >= 0:
                commands.append(shlex.split(line[start:].split(" | ")[0].split(" && ")[0]))
    return commands


def test_guide_uses_only_orchestrator_commands_and_flags_that_exist():
    from orchestrator.commands import build_parser

    commands = _doc_commands("python -m orchestrator ")
    assert len(commands) >= 4, commands
    for words in commands:
        parser, args = build_parser(), words[3:]
        while True:  # descend through the subcommands the words name
            sub = next(
                (a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction"), None
            )
            if sub is None or not args or args[0] not in sub.choices:
                break
            parser, args = sub.choices[args[0]], args[1:]
        assert sub is None, f"docs/cluster.md: `{' '.join(words)}` names no complete command"
        known = {s for a in parser._actions for s in a.option_strings}
        for word in args:
            if word.startswith("--"):
                assert word.split("=")[0] in known, (
                    f"docs/cluster.md: `{' '.join(words)}`: {word} is not an option of "
                    f"{parser.prog}"
                )


def test_guide_uses_only_ray_job_flags_that_exist():
    from ray.dashboard.modules.job import cli as job_cli

    commands = _doc_commands("ray job ")
    verbs = {words[2] for words in commands}
    assert {"submit", "logs", "stop", "status"} <= verbs, verbs
    for words in commands:
        command = job_cli.job_cli_group.commands[words[2]]
        known = {
            s
            for p in command.params
            for s in getattr(p, "opts", []) + getattr(p, "secondary_opts", [])
        }
        for word in words[3:]:
            if word == "--":
                break
            if word.startswith("--"):
                assert word.split("=")[0] in known, (
                    f"docs/cluster.md: `{' '.join(words)}`: {word} is not an option of ray job "
                    f"{words[2]}"
                )
