"""A training run's logged params (MLflow's strings) read back as its config."""

from pathlib import Path

from pneumonia_zoo.tracking.params import train_config_from_params
from pneumonia_zoo.training.config import TrainConfig


def test_a_logged_run_rebuilds_its_config(fixture_data: Path) -> None:
    config = TrainConfig.build(arch="small_cnn", data=fixture_data, limit=64, augmentation={"noise_p": 0.1})
    params = {k: str(v) for k, v in config.flat().items()}  # MLflow stores params as strings, None as "None"
    assert params["pretrained"] == "None" and params["max_minutes"] == "None"
    assert train_config_from_params(params) == config


def test_params_that_are_not_a_training_run_give_none() -> None:
    assert train_config_from_params({"schedules": "cosine"}) is None  # a sweep's parent run
    assert train_config_from_params({"arch": "inception", "data": "."}) is None
