"""MLflow: run logging, the model package, the registry and champion promotion."""
