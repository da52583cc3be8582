"""Settings shared by every layer, read from the environment (and `.env`)."""

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent


class Settings(BaseSettings):
    """Environment variables use the `PNEUMONIA_ZOO_` prefix, except MLflow's own URI."""

    model_config = SettingsConfigDict(env_prefix="PNEUMONIA_ZOO_", env_file=".env", extra="ignore")

    # MLflow reads MLFLOW_TRACKING_URI itself; we mirror it so the default is explicit.
    tracking_uri: str = Field(
        default="sqlite:///mlflow.db",
        validation_alias="MLFLOW_TRACKING_URI",
    )

    @field_validator("tracking_uri")
    @classmethod
    def _empty_means_default(cls, value: str) -> str:
        # `MLFLOW_TRACKING_URI=` (set but empty) would make MLflow fall back to its retired ./mlruns store.
        return value.strip() or "sqlite:///mlflow.db"

    experiment_name: str = "pneumonia-zoo"
    registered_model_name: str = "pneumonia-classifier"
    champion_alias: str = "champion"
    max_image_pixels: int = 50_000_000

    # Serving (pneumonia_zoo.serving).
    reload_interval_s: float = Field(default=30.0, ge=0)  # re-check the champion alias; 0 = off
    admin_token: SecretStr | None = None  # bearer token for /api/v1/admin/*; unset = disabled
    api_key: SecretStr | None = None  # X-API-Key required on /api/*; unset = the API is open
    # Browser origins allowed to call the API cross-site ("https://a.org,https://b.org"); empty = none.
    cors_origins: Annotated[list[str], NoDecode] = []
    runtime: Literal["auto", "onnx", "torch"] = "auto"  # auto: ONNX Runtime when the version has it
    max_upload_bytes: int = Field(default=20 * 1024 * 1024, gt=0)  # per file, enforced while streaming
    max_batch_files: int = Field(default=16, gt=0)  # files in one /api/v1/predict request
    max_batch_size: int = Field(default=16, gt=0)  # images in one network call (micro-batching)
    max_batch_wait_ms: float = Field(default=5.0, ge=0)  # how long a batch waits for company
    model_cache_size: int = Field(default=3, ge=0)  # non-champion versions kept loaded (LRU)
    mlflow_ui_url: str = "http://127.0.0.1:5000"
    sample_images_dir: Path = PROJECT_ROOT / "sample_images"

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        # Comma-separated in the environment (a JSON list would need quoting in every shell and YAML file).
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value


@lru_cache
def get_settings() -> Settings:
    return Settings()
