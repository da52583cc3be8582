"""MLflow: the store and its registry, the training recipe, publishing, sweeps, ensembles,
evaluation runs, model cards, the compare report and the starter model."""
