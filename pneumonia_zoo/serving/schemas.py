"""Response models of the JSON API (they also document /docs)."""

from pydantic import BaseModel, ConfigDict, Field


class ModelRef(BaseModel):
    name: str = Field(examples=["pneumonia-classifier"])
    version: str = Field(examples=["3"])
    architecture: str = Field(examples=["resnet50"])
    runtime: str = Field(description="onnx (ONNX Runtime) or torch (PyTorch)", examples=["onnx"])


class OperatingPointRef(BaseModel):
    name: str = Field(examples=["balanced"])
    threshold: float
    rule: str = Field(description="How the threshold was chosen (always on validation data)")


class OutOfPopulation(BaseModel):
    flagged: bool = Field(description="The image looks unlike the paediatric X-rays the model was trained on")
    score: float | None = Field(description="The feature guard's score over its threshold (> 1: flagged)")
    reasons: list[str]
    warning: str | None = None


class Prediction(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "request_id": "5f0c2a7e9d8b4c1fa3e6b2d4c8a9e0f1",
                    "label": "PNEUMONIA",
                    "probabilities": {"NORMAL": 0.03, "PNEUMONIA": 0.97},
                    "threshold": 0.74,
                    "operating_point": {
                        "name": "balanced",
                        "threshold": 0.74,
                        "rule": "calibrated P(PNEUMONIA) above the training prevalence",
                    },
                    "uncertain": False,
                    "out_of_population": {"flagged": False, "score": 0.41, "reasons": [], "warning": None},
                    "model": {
                        "name": "pneumonia-classifier",
                        "version": "3",
                        "architecture": "efficientnet_lite0",
                        "runtime": "onnx",
                    },
                    "latency_ms": 41.2,
                    "filename": "person38_virus_84.jpeg",
                }
            ]
        }
    )

    request_id: str | None = Field(
        default=None,
        description="This answer's id: its audit record (GET /api/v1/predictions/{id}) and feedback key",
    )
    label: str = Field(description="PNEUMONIA when calibrated P(PNEUMONIA) >= threshold, else NORMAL")
    probabilities: dict[str, float] = Field(description="Temperature-calibrated class probabilities")
    threshold: float = Field(description="Decision threshold on P(PNEUMONIA) of the operating point used")
    operating_point: OperatingPointRef
    uncertain: bool = Field(description="P(PNEUMONIA) within 0.1 of the threshold: a coin toss")
    out_of_population: OutOfPopulation
    model: ModelRef
    latency_ms: float | None = Field(
        description="Decoding, preprocessing and inference time for this request"
    )
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
    kind: str = Field(default="single", description="single or ensemble")
    pretrained: bool | None = None
    operating_points: list[str] = Field(default_factory=list)
    metrics: dict[str, float] = Field(
        description="val_* (used to pick the champion) and test_* metrics recorded at training",
        examples=[{"val_auc": 0.97, "test_auc": 0.95, "test_sensitivity": 0.96, "test_specificity": 0.81}],
    )
    mlflow_url: str
    card_url: str = Field(description="The version's model card (Markdown)")
    evaluations: dict[str, float] = Field(
        default_factory=dict, description="Logged evaluations: eval_<context>_<metric>"
    )
    site: str | None = Field(default=None, description="The site an adapted version was adapted to")
    parent: str | None = Field(
        default=None, description="The version this one was adapted from (or is a guarded copy of)"
    )


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
