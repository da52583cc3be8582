"""Settings shared by every layer, read from the environment (and `.env`)."""

from functools import lru_cache
from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    """Environment variables use the `PNEUMONIA_ZOO_` prefix, except MLflow's own URI."""

    model_config = SettingsConfigDict(env_prefix="PNEUMONIA_ZOO_", env_file=".env", extra="ignore")

    # MLflow reads MLFLOW_TRACKING_URI itself; we mirror it so the default is explicit.
    tracking_uri: str = Field(
        default="sqlite:///mlflow.db",
        validation_alias="MLFLOW_TRACKING_URI",
    )
    experiment_name: str = "pneumonia-zoo"
    registered_model_name: str = "pneumonia-classifier"
    champion_alias: str = "champion"
    max_image_pixels: int = 50_000_000


@lru_cache
def get_settings() -> Settings:
    return Settings()
