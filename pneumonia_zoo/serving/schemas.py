"""Response models of the JSON API (they also document /docs)."""

from pydantic import BaseModel, ConfigDict, Field


class ModelRef(BaseModel):
    name: str = Field(examples=["pneumonia-classifier"])
    version: str = Field(examples=["3"])
    architecture: str = Field(examples=["resnet50"])
    runtime: str = Field(description="onnx (ONNX Runtime) or torch (PyTorch)", examples=["onnx"])


class Prediction(BaseModel):
    model_config = ConfigDict(json_schema_extra={"examples": [{
        "label": "PNEUMONIA", "probabilities": {"NORMAL": 0.03, "PNEUMONIA": 0.97}, "threshold": 0.42,
        "model": {"name": "pneumonia-classifier", "version": "3", "architecture": "resnet50",
                  "runtime": "onnx"},
        "latency_ms": 41.2, "filename": "person38_virus_84.jpeg",
    }]})

    label: str = Field(description="PNEUMONIA when P(PNEUMONIA) >= threshold, else NORMAL")
    probabilities: dict[str, float]
    threshold: float = Field(description="Decision threshold on P(PNEUMONIA), chosen on validation data")
    model: ModelRef
    latency_ms: float = Field(description="Decoding, preprocessing and inference time for this request")
    filename: str | None = None


class ModelVersionInfo(BaseModel):
    name: str
    version: str
    architecture: str
    image_size: int | None = None
    threshold: float | None = None
    champion: bool
    aliases: list[str]
    onnx: bool
    pretrained: bool | None = None
    metrics: dict[str, float] = Field(
        description="val_* (used to pick the champion) and test_* metrics recorded at training",
        examples=[{"val_auc": 0.97, "test_auc": 0.95, "test_sensitivity": 0.96, "test_specificity": 0.81}],
    )
    mlflow_url: str


class ModelsResponse(BaseModel):
    name: str
    champion_alias: str
    serving: ModelRef | None = Field(description="The version answering /api/v1/predict now")
    versions: list[ModelVersionInfo]


class Health(BaseModel):
    status: str = Field(examples=["ok"])


class Readiness(BaseModel):
    status: str = Field(examples=["ready"])
    model: ModelRef | None = None
    last_error: str | None = Field(
        default=None, description="The last failed reload, while an older model keeps serving"
    )


class ReloadResult(BaseModel):
    changed: bool
    model: ModelRef | None
    error: str | None = None


class ErrorResponse(BaseModel):
    detail: str = Field(examples=["the file is not a JPEG or PNG image"])
