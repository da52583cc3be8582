"""`uvicorn fastapiapp:app`: the service. A stub until the serving layer lands."""

from fastapi import FastAPI

app = FastAPI(title="Pneumonia Zoo")


@app.get("/healthz")
def healthz() -> dict[str, str]:
    return {"status": "ok"}
