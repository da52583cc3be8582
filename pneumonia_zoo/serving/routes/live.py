"""The live loop's JSON API: labels fed back, a recorded prediction, the monitor. Behind the API key
when one is set, like every /api route."""

from typing import Annotated, Any, Literal

import anyio
from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi import Path as PathParameter
from pydantic import BaseModel, ConfigDict, Field, model_validator

from pneumonia_zoo.audit.monitor import Window
from pneumonia_zoo.serving.deps import HolderDep, SettingsDep
from pneumonia_zoo.serving.live import LiveLoop
from pneumonia_zoo.serving.schemas import ErrorResponse
from pneumonia_zoo.serving.security import require_api_key

router = APIRouter(
    prefix="/api/v1",
    tags=["live"],
    dependencies=[Depends(require_api_key)],
    responses={401: {"model": ErrorResponse, "description": "Missing or wrong X-API-Key (when one is set)"}},
)

_ID_PATTERN = r"^[A-Za-z0-9._:-]{1,128}$"


def get_live(request: Request) -> LiveLoop:
    return request.app.state.live


LiveDep = Annotated[LiveLoop, Depends(get_live)]


class FeedbackIn(BaseModel):
    """The true label of an answered request (or of every answered request of one input, by sha256)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"request_id": "5f0c…", "label": "PNEUMONIA", "source": "radiology"}]
        },
    )

    request_id: str | None = Field(default=None, pattern=_ID_PATTERN, description="From the answer's body")
    sha256: str | None = Field(default=None, pattern=r"^[0-9a-fA-F]{64}$", description="The input's sha256")
    label: Literal["NORMAL", "PNEUMONIA"]
    source: str | None = Field(
        default=None, max_length=64, description="Who says so (one label per request and source)"
    )
    patient: str | None = Field(
        default=None, max_length=128, description="Optional patient id: an export groups by it"
    )

    @model_validator(mode="after")
    def _one_key(self) -> "FeedbackIn":
        if (self.request_id is None) == (self.sha256 is None):
            raise ValueError("give exactly one of request_id and sha256")
        return self


class Labelled(BaseModel):
    request_id: str
    status: Literal["created", "updated", "unchanged"]


class FeedbackOut(BaseModel):
    label: str
    source: str
    labelled: list[Labelled]


_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse, "description": "No answered prediction has this id (or sha256)"},
    422: {"model": ErrorResponse, "description": "A malformed id, label or body"},
}


@router.post(
    "/feedback",
    response_model=FeedbackOut,
    status_code=201,
    responses=_NOT_FOUND | {200: {"model": FeedbackOut, "description": "Already labelled so (or corrected)"}},
    summary="Feed back the true label of an answered request",
)
async def feedback(body: FeedbackIn, live: LiveDep, response: Response) -> dict[str, Any]:
    trail = live.require()
    outcome = await anyio.to_thread.run_sync(
        lambda: trail.add_feedback(body.label, body.request_id, body.sha256, body.source, body.patient)
    )
    if not outcome.created:
        response.status_code = 200
    return outcome.to_dict()


@router.get(
    "/predictions/{request_id}",
    responses=_NOT_FOUND,
    summary="The recorded prediction of a request, its shadow scores and the labels fed back",
)
async def prediction(request_id: Annotated[str, PathParameter(pattern=_ID_PATTERN)], live: LiveDep) -> dict:
    trail = live.require()
    return await anyio.to_thread.run_sync(trail.prediction, request_id)


@router.get(
    "/monitor",
    responses={422: {"model": ErrorResponse, "description": "Not a window"}},
    summary="Per version: volume, label mix, flag rate, live figures, drift; shadow agreement",
)
async def monitor(
    live: LiveDep,
    settings: SettingsDep,
    holder: HolderDep,
    window: Annotated[
        str | None, Query(description="30m, 24h, 7d, 4w or all (default PNEUMONIA_ZOO_MONITOR_WINDOW)")
    ] = None,
) -> dict:
    parsed = Window.parse(window or settings.monitor_window)
    found = await anyio.to_thread.run_sync(live.monitor, parsed)
    current = holder.current
    return {"champion": current.version if current is not None else None} | found
