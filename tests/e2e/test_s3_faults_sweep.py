"""A sweep whose data and storage are both in S3 behind the fault-injecting proxy
(tests/s3_faults.py: 25 % SlowDown, 5 % resets, 3 % bodies cut short), on the session's real Ray:
every trial of the two healthy tasks finishes, both champions are registered, and the dataset cache
holds the data byte for byte. A third task's trial cannot write a single checkpoint (the store
refuses its writes): it is `failed` (not "stopped by the scheduler") in the results and MLflow,
and the run's exit code says so."""

from __future__ import annotations

import textwrap
from pathlib import Path

from conftest import moto_client
from cyclegan.sources.synthetic import generate
from orchestrator.config.plan import load_manifest
from orchestrator.sweep.experiment import run_experiment
from orchestrator.sweep.options import RunOptions

BUCKET = "faults-sweep"
MANIFEST = """\
name: faulty-s3
defaults:
  train: {{netG: resnet_1blocks, ngf: 4, ndf: 4, load_size: 24, crop_size: 24, num_threads: 0,
          n_epochs: 1, n_epochs_decay: 0, s3_endpoint_url: "{proxy}", cache_dir: "{cache}"}}
  resources: {{workers: 1, cpus_per_worker: 0.5}}
search: {{metric: cycle_l1, max_failures: 0}}
tasks:
  - {{name: first, data: "s3://{bucket}/data/first"}}
  - {{name: second, data: "s3://{bucket}/data/second"}}
  - {{name: nockpt, data: "synthetic://colorshift?size=24&n_train=4&n_test=2&seed=0"}}
"""


def tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def test_a_sweep_through_s3_faults_finishes_and_a_trial_that_cannot_checkpoint_fails(
    ray_session, s3_env, s3_server, s3_faults, tmp_path, capsys, monkeypatch
):
    from mlflow import MlflowClient

    from orchestrator.sweep.results import load_results

    source = generate("colorshift", tmp_path / "src", n_train=4, n_test=2, size=24, seed=0)
    client = moto_client(s3_server)
    client.create_bucket(Bucket=BUCKET)
    for task in ("first", "second"):
        for rel, data in tree(source).items():
            client.put_object(Bucket=BUCKET, Key=f"data/{task}/{rel}", Body=data)
    uri = f"sqlite:///{tmp_path}/mlflow.db"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    cache = tmp_path / "cache"
    manifest = tmp_path / "manifest.yaml"
    manifest.write_text(
        textwrap.dedent(MANIFEST).format(proxy=s3_faults.url, cache=cache, bucket=BUCKET)
    )
    loaded = load_manifest(manifest)
    hostport = s3_faults.url.removeprefix("http://")
    s3_faults.set_rates(throttle=0.25, reset=0.05, short=0.03, delay=0.02)
    s3_faults.deny = r"/trials/nockpt-"  # every checkpoint write of that task's trials
    try:
        code = run_experiment(
            loaded,
            loaded.plans,
            RunOptions(
                storage=f"s3://{BUCKET}/runs?endpoint_override={hostport}&scheme=http",
                results_dir=tmp_path / "results",
            ),
        )
    finally:
        s3_faults.set_rates(throttle=0, reset=0, short=0, delay=0)
        s3_faults.deny = None
    out = capsys.readouterr().out
    assert s3_faults.injected["throttle"] > 10 and s3_faults.injected["reset"] > 0, out
    assert code == 1 and "1 trial(s) failed for good: nockpt/" in out, out
    results = load_results(tmp_path / "results" / "faulty-s3.json")
    for task in ("first", "second"):
        assert [t.status for t in results[task].trials] == ["finished"], out
        assert results[task].registry and results[task].registry.get("version"), out
    [lost] = results["nockpt"].trials
    assert lost.status == "failed" and "scheduler" not in (lost.note or ""), lost
    client = MlflowClient(uri)
    for task in ("first", "second"):
        assert client.get_model_version_by_alias(f"cyclegan-{task}", "champion")
    experiment = client.get_experiment_by_name("faulty-s3")
    [run] = client.search_runs([experiment.experiment_id], f"tags.trial = '{lost.trial_id}'")
    assert run.info.status == "FAILED" and run.data.tags["cyclegan.status"] == "failed"
    snapshots = sorted(cache.glob("s3/*/snapshots/*/data"))
    assert len(snapshots) == 2 and all(tree(s) == tree(source) for s in snapshots)
