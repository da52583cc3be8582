"""The /monitor page: the monitor's figures per version as server-drawn charts (no script needed)."""

from typing import Annotated

import anyio
from fastapi import APIRouter, Query, Request
from fastapi.responses import HTMLResponse
from markupsafe import Markup

from pneumonia_zoo.audit.monitor import Window
from pneumonia_zoo.serving import charts
from pneumonia_zoo.serving.deps import HolderDep, SettingsDep, TemplatesDep
from pneumonia_zoo.serving.live import LiveLoop
from pneumonia_zoo.stats.drift import PSI_ALERT, PSI_WARN

router = APIRouter(include_in_schema=False)

WINDOWS = ("24h", "7d", "30d", "all")
LABEL_COLOURS = {"NORMAL": "#2f9e44", "PNEUMONIA": "#d9480f"}
SCORE_NAMES = {"p_pneumonia": "P(PNEUMONIA)", "guard_score": "guard score"}


def timeline_charts(timeline: dict) -> dict[str, Markup]:
    step = timeline["bucket_ms"]
    versions = timeline["versions"]

    def series(value) -> dict[str, list[tuple[int, float]]]:  # type: ignore[no-untyped-def]
        return {v: [(point["t"], value(point)) for point in points] for v, points in versions.items()}

    return {
        "volume": charts.line_chart(
            series(lambda p: p["n"]), "Predictions per bucket", y_format=".0f", step_ms=step
        ),
        "flag_rate": charts.line_chart(
            series(lambda p: p["flagged"] / p["n"]), "Flag rate", y_max=1, y_format=".0%", step_ms=step
        ),
        "mean_p": charts.line_chart(
            series(lambda p: p["mean_p"]), "Mean P(PNEUMONIA)", y_max=1, y_format=".1f", step_ms=step
        ),
    }


def version_charts(versions: dict) -> dict[str, dict]:
    found: dict[str, dict] = {}
    for version, figures in versions.items():
        drifts = {}
        for name, drift in figures["drift"].items():
            if "edges" in drift:
                title = f"v{version} {SCORE_NAMES[name]}: validation against live"
                drifts[name] = charts.histogram_pair(
                    drift["edges"], drift["reference_shares"], drift["live_counts"], title
                )
        rows = [(key, figures[key], figures[f"{key}_ci"]) for key in ("sensitivity", "specificity", "auc")]
        found[version] = {
            "drift": drifts,
            "live": charts.intervals(rows, f"v{version} live figures with 95% intervals"),
        }
    return found


@router.get("/monitor", response_class=HTMLResponse)
async def monitor_page(
    request: Request,
    templates: TemplatesDep,
    settings: SettingsDep,
    holder: HolderDep,
    window: Annotated[str | None, Query(max_length=16)] = None,
) -> HTMLResponse:
    live: LiveLoop = request.app.state.live
    parsed = Window.parse(window or settings.monitor_window)
    context: dict = {
        "window": parsed.name,
        "windows": WINDOWS,
        "recording": live.trail is not None,
        "psi_warn": PSI_WARN,
        "psi_alert": PSI_ALERT,
        "champion": holder.current.version if holder.current is not None else None,
        "score_names": SCORE_NAMES,
    }
    if live.trail is not None:
        trail = live.trail

        def read() -> tuple[dict, dict]:
            return live.monitor(parsed), trail.series(live.store.model_name, parsed)

        found, timeline = await anyio.to_thread.run_sync(read)
        context |= {
            "monitor": found,
            "timeline": timeline_charts(timeline),
            "label_mix": charts.stacked_bars(
                {v: f["label_mix"] for v, f in found["versions"].items()}, "Label mix", LABEL_COLOURS
            ),
            "per_version": version_charts(found["versions"]),
        }
    return templates.TemplateResponse(request, "monitor.html", context)
