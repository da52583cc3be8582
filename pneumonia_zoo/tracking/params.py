"""A training run's logged params (MLflow strings) read back into its TrainConfig."""

from pneumonia_zoo.errors import UserError
from pneumonia_zoo.training.config import TrainConfig


def train_config_from_params(params: dict[str, str]) -> TrainConfig | None:
    """Rebuild a run's config from its logged MLflow params (None: not a training run)."""
    try:
        return TrainConfig.from_flat(
            {key: (None if value == "None" else value) for key, value in params.items()}
        )
    except UserError:
        return None


def train_command(params: dict[str, str]) -> str | None:
    """The `pneumonia-zoo train` command that reproduces a logged run (None: not a training run)."""
    config = train_config_from_params(params)
    return config.train_command() if config is not None else None
