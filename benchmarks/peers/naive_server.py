"""The naive baseline: every request loads the champion from the registry, then predicts.

This is how the original project's endpoint worked (`mlflow.pyfunc.load_model` per request).
uvicorn benchmarks.peers.naive_server:app (with MLFLOW_TRACKING_URI set)
"""

import tempfile

import mlflow
import pandas as pd
from fastapi import FastAPI, Request
from starlette.concurrency import run_in_threadpool

from pneumonia_zoo.config import get_settings
from pneumonia_zoo.package.pyfunc import IMAGE_COLUMN

app = FastAPI()


def _predict(data: bytes) -> dict:
    settings = get_settings()
    mlflow.set_tracking_uri(settings.tracking_uri)
    uri = f"models:/{settings.registered_model_name}@{settings.champion_alias}"
    with tempfile.TemporaryDirectory() as tmp:
        model = mlflow.pyfunc.load_model(uri, dst_path=tmp)
        frame = model.predict(pd.DataFrame({IMAGE_COLUMN: [data]}))  # the pyfunc signature's one column
    row = frame.iloc[0]
    return {
        "label": row["label"],
        "probabilities": {"NORMAL": float(row["NORMAL"]), "PNEUMONIA": float(row["PNEUMONIA"])},
        "model": {"name": settings.registered_model_name, "version": "naive", "runtime": "pyfunc"},
    }


@app.get("/health")
def health() -> dict:
    return {"status": "ok"}


@app.post("/predict")
async def predict(request: Request) -> dict:
    form = await request.form()
    upload = form["file"]
    assert not isinstance(upload, str), "the field 'file' must be a file"
    data = await upload.read()
    return await run_in_threadpool(_predict, data)
