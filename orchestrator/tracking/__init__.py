"""MLflow: runs, lineage, the registry and the registered pyfunc model. The only package that imports mlflow."""
