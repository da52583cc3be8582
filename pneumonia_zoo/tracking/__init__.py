"""MLflow I/O only: the store and its registry, typed version records, publishing a package as a
version, and model cards rendered from records. No torch, no training loop, no model factory."""
