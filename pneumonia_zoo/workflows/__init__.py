"""Workflows: train, sweep, ensemble, evaluate, backfill, the starter, compare; each reads top to bottom.

The layer above tracking: a workflow runs the stages of the lower layers (data, training, package,
evaluation) in order and records what they produced through tracking/ (MLflow I/O only).
"""
