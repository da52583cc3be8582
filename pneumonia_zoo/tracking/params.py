"""A training run's logged MLflow params read back as its TrainConfig (MLflow stores every param as a
string, and None as the string "None")."""

from pneumonia_zoo.errors import UserError
from pneumonia_zoo.training.config import TrainConfig


def train_config_from_params(params: dict[str, str]) -> TrainConfig | None:
    """Rebuild a run's config from its logged params (None: not a training run, e.g. a sweep's parent)."""
    try:
        return TrainConfig.from_flat(
            {key: (None if value == "None" else value) for key, value in params.items()}
        )
    except UserError:
        return None
