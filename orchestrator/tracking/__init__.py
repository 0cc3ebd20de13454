"""MLflow: runs, lineage, the registry and the registered pyfunc model. The only package that
imports mlflow.

A trial records through the backend-neutral `recorder.TrialRecorder`; every private MLflow name is
in `mlflow_internals`. This file imports nothing, so `orchestrator.tracking.context` loads no
mlflow.
"""
