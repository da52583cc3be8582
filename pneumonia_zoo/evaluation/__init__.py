"""Evaluating a model package on data: the same code after training, in `pneumonia-zoo evaluate`
and for ensembles, so a logged metric is what the shipped package reproduces."""
