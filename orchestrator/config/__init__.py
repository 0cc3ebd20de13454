"""The manifest as a typed plan: schema, problems, search space, resources. Imports no ray, mlflow or torch."""
