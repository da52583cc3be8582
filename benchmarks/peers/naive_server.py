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

app = FastAPI()


def _predict(data: bytes) -> dict:
    settings = get_settings()
    uri = f"models:/{settings.registered_model_name}@{settings.champion_alias}"
    with tempfile.TemporaryDirectory() as tmp:
        model = mlflow.pyfunc.load_model(uri, dst_path=tmp)
        frame = model.predict(pd.DataFrame({"image": [data]}))  # the pyfunc signature's one column
    row = frame.iloc[0]
    return {
        "label": row["label"],
        "probabilities": {"NORMAL": float(row["NORMAL"]), "PNEUMONIA": float(row["PNEUMONIA"])},
        "model": {"name": settings.registered_model_name, "version": "?", "runtime": "torch"},
    }


@app.get("/health")
def health() -> dict:
    return {"status": "ok"}


@app.post("/predict")
async def predict(request: Request) -> dict:
    form = await request.form()
    data = await form["file"].read()
    return await run_in_threadpool(_predict, data)
