"""The workflows' choice lists, declared once and free of torch and MLflow: the CLI lists them in its
help without importing a workflow, and the workflows check them."""

from pneumonia_zoo.choices import OneOf

# A Kaggle folder's splits `evaluate` reads (val is rebuilt from the model's own seed).
EVALUATION_SPLIT = OneOf(("train", "val", "test"), "split")
# Where a sweep's trials run: one after another in this process, or as Ray tasks.
SWEEP_BACKEND = OneOf(("sequential", "ray"), "--backend")
