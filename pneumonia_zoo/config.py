"""Settings, read from the environment (and `.env`) once, at the top (the CLI, the app factory), and
passed down: no layer below reads the environment for them."""

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from pneumonia_zoo.package.choices import Runtime
from pneumonia_zoo.resources import SAMPLE_IMAGES_DIR


class Settings(BaseSettings):
    """Environment variables use the `PNEUMONIA_ZOO_` prefix, except MLflow's own URI."""

    # populate_by_name: `Settings(tracking_uri=...)` works as well as the MLFLOW_TRACKING_URI alias.
    model_config = SettingsConfigDict(
        env_prefix="PNEUMONIA_ZOO_", env_file=".env", extra="ignore", populate_by_name=True
    )

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
    onnx_threads: int | None = Field(default=None, ge=1)  # ONNX Runtime intra-op threads; None = CPUs allowed

    # Serving (pneumonia_zoo.serving).
    reload_interval_s: float = Field(default=30.0, ge=0)  # re-check the champion alias; 0 = off
    admin_token: SecretStr | None = None  # bearer token for /api/v1/admin/*; unset = disabled
    api_key: SecretStr | None = None  # required on every route but the probes (access.py); unset = open
    # Browser origins allowed to call the API cross-site ("https://a.org,https://b.org"); empty = none.
    cors_origins: Annotated[list[str], NoDecode] = []
    runtime: Runtime = "auto"  # auto: ONNX Runtime when the version has it
    max_upload_bytes: int = Field(default=20 * 1024 * 1024, gt=0)  # per file, enforced while streaming
    max_batch_files: int = Field(default=16, gt=0)  # files in one /api/v1/predict request
    max_batch_size: int = Field(default=8, gt=0)  # images in one network call at most (memory grows with it)
    max_batch_wait_ms: float = Field(default=5.0, ge=0)  # how long a batch waits for company
    model_cache_size: int = Field(default=3, ge=0)  # non-champion versions kept loaded (LRU)
    decode_threads: int | None = Field(default=None, ge=1)  # decode/preprocess pool; None = CPUs allowed
    max_queued_batches: int = Field(default=64, gt=0)  # requests waiting for the network; more: 503
    # Admission control (serving/admission.py): bytes in flight across the process, and how long to wait.
    upload_budget_mb: float = Field(default=256, gt=0)  # request bodies being received and held
    pixel_budget_mb: float = Field(default=512, gt=0)  # decoded pixels and network inputs in flight
    max_waiting_requests: int = Field(default=64, ge=0)  # per budget; past it: 503 with Retry-After
    request_timeout_s: float = Field(default=60, gt=0)  # decode + inference deadline once the body is in
    timeout_status: Literal[503, 504] = 504  # the answer past that deadline
    body_timeout_s: float = Field(default=30, gt=0)  # a body not received within this: 408, connection closed
    # Slow or stalled clients (serving/uploads.py, serving/server.py): after the grace period a body must
    # average at least this many KB (kilobytes) per second, or 408.
    min_body_rate_kb_s: float = Field(default=10, ge=0)  # 0 = no minimum rate
    body_grace_s: float = Field(default=5, ge=0)
    max_request_bytes: int = Field(default=64 * 1024 * 1024, gt=0)  # a whole request body (413)
    header_timeout_s: float = Field(default=10, gt=0)  # request line + headers (pneumonia-zoo serve only)
    # Requests in flight before 503 (pneumonia-zoo serve; /healthz and /readyz exempt): admission control
    # (the budgets and their queues) decides before this does.
    limit_concurrency: int = Field(default=256, gt=0)
    # Open sockets (pneumonia-zoo serve): past it, the oldest connection still waiting for its request
    # headers (stalled or idle) is closed to make room, so slow clients cannot lock others out.
    max_connections: int = Field(default=1000, gt=0)
    keep_alive_s: float = Field(default=5, gt=0)  # idle keep-alive connections are closed after this
    model_cache_mb: float = Field(default=256, ge=0)  # non-champion versions kept loaded, by memory
    workers: int = Field(default=1, ge=1)  # uvicorn worker processes (each holds its own models)
    graceful_shutdown_s: float = Field(default=8, ge=0)  # in-flight requests finish (docker stop waits 10 s)
    # Logging (serving/logs.py): level and format of the service's own log lines.
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_json: bool = False
    mlflow_ui_url: str = "http://127.0.0.1:5000"
    # The live loop (pneumonia_zoo/audit): every answer recorded, feedback, the monitor, a shadow challenger.
    # Any SQLAlchemy URL; unset: audit.db beside a sqlite MLflow store (else in the working folder);
    # "off": no recording.
    audit_url: str | None = None
    audit_on_error: Literal["serve", "refuse"] = "serve"  # the database is down or full: answer, or 503
    audit_timeout_s: float = Field(default=10, gt=0)  # an answer waits this long for its record's commit
    audit_batch_size: int = Field(default=256, gt=0)  # records committed in one transaction at most
    # SQLite: normal survives a killed process; full also a power loss, for an fsync per commit.
    audit_sync: Literal["normal", "full"] = "normal"
    # Opt-in: the uploaded bytes kept (PHI) under this folder, named by their sha256, for this many days.
    keep_inputs_dir: Path | None = None
    keep_inputs_days: float = Field(default=30, gt=0)
    monitor_window: str = "7d"  # /api/v1/monitor's default window (30m, 24h, 7d, 4w or all)
    monitor_refresh_s: float = Field(default=60, gt=0)  # the Prometheus live gauges are recomputed this often
    challenger_alias: str = "challenger"  # when it names a version, a share of answers is shadow-scored
    shadow_sample: float = Field(default=0.2, ge=0, le=1)  # share of champion requests scored by it
    shadow_queue: int = Field(default=16, ge=1)  # shadow jobs waiting; more are dropped and counted
    sample_images_dir: Path = SAMPLE_IMAGES_DIR
    # Access (serving/access.py): with api_key set, /metrics needs it too unless this is true.
    metrics_public: bool = False
    # sha256 digests of the model.json files allowed to serve (comma-separated); empty = any verified
    # package. model.json records the sha256 of every other file, so its digest pins the whole package.
    trusted_digests: Annotated[list[str], NoDecode] = []

    @field_validator("trusted_digests", mode="before")
    @classmethod
    def _split_digests(cls, value: object) -> object:
        if isinstance(value, str):
            value = [digest for digest in value.split(",") if digest.strip()]
        if isinstance(value, list | tuple):
            digests = [str(digest).strip().lower().removeprefix("sha256:") for digest in value]
            for digest in digests:
                if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
                    raise ValueError(f"'{digest[:70]}' is not a sha256 digest (64 hex digits)")
            return digests
        return value

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        # Comma-separated in the environment (a JSON list would need quoting in every shell and YAML file).
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value


@lru_cache
def get_settings() -> Settings:
    """The environment's settings, read once: for the CLI and the default app only."""
    return Settings()
