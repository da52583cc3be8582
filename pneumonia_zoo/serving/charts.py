"""Small charts as inline SVG, drawn on the server: the monitor page needs no script and no CDN, and its
strict Content-Security-Policy holds (SVG presentation attributes are not inline styles)."""

import math
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime

from markupsafe import Markup, escape

PALETTE = ("#1f6feb", "#d9480f", "#2f9e44", "#9c36b5", "#e8590c", "#0b7285", "#5c940d", "#c2255c")
WIDTH, HEIGHT = 560, 180
LEFT, RIGHT, TOP, BOTTOM = 44, 12, 12, 26


def colour(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def _svg(body: list[str], title: str, width: int = WIDTH, height: int = HEIGHT) -> Markup:
    return Markup(
        f'<svg class="chart" role="img" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>{"".join(body)}</svg>'
    )


def _text(x: float, y: float, text: str, anchor: str = "start", size: int = 10, fill: str = "#444") -> str:
    return (
        f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" '
        f'fill="{fill}">{escape(text)}</text>'
    )


def _axes(y_max: float, y_format: str, width: int, height: int) -> list[str]:
    body = []
    for fraction in (0, 0.5, 1):
        y = height - BOTTOM - fraction * (height - TOP - BOTTOM)
        body.append(f'<line x1="{LEFT}" x2="{width - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" stroke="#ddd"/>')
        body.append(_text(LEFT - 4, y + 3, format(fraction * y_max, y_format), "end"))
    return body


def _time_label(ms: int, step_ms: int) -> str:
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    return moment.strftime("%m-%d %H:%M" if step_ms < 86_400_000 else "%Y-%m-%d")


def line_chart(
    series: Mapping[str, Sequence[tuple[int, float]]],
    title: str,
    y_max: float | None = None,
    y_format: str = ".2f",
    step_ms: int = 3_600_000,
) -> Markup:
    """One line per named series of (time in ms, value); a single point is drawn as a dot."""
    points = [point for values in series.values() for point in values]
    if not points:
        return _svg([_text(WIDTH / 2, HEIGHT / 2, "no data in this window", "middle")], title)
    t0, t1 = min(p[0] for p in points), max(p[0] for p in points)
    span = max(t1 - t0, step_ms)
    top = y_max if y_max is not None else max(max(p[1] for p in points), 1e-9) * 1.1
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM

    def xy(t: int, value: float) -> tuple[float, float]:
        return LEFT + (t - t0) / span * plot_w, HEIGHT - BOTTOM - min(value / top, 1.0) * plot_h

    body = _axes(top, y_format, WIDTH, HEIGHT)
    body.append(_text(LEFT, HEIGHT - 6, _time_label(t0, step_ms)))
    body.append(_text(WIDTH - RIGHT, HEIGHT - 6, _time_label(t0 + span, step_ms), "end"))
    for index, (name, values) in enumerate(series.items()):
        coordinates = [xy(t, v) for t, v in values if math.isfinite(v)]
        stroke = colour(index)
        if len(coordinates) > 1:
            path = " ".join(f"{x:.1f},{y:.1f}" for x, y in coordinates)
            body.append(f'<polyline fill="none" stroke="{stroke}" stroke-width="2" points="{path}"/>')
        body += [f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{stroke}"/>' for x, y in coordinates]
        body.append(_text(WIDTH - RIGHT - 48 * index, TOP + 8, f"v{name}", "end", fill=stroke))
    return _svg(body, title)


def stacked_bars(rows: dict[str, dict[str, int]], title: str, colours: dict[str, str]) -> Markup:
    """One horizontal bar per row, split by its parts' shares (e.g. the label mix of each version)."""
    height = TOP + BOTTOM + 26 * max(len(rows), 1)
    body = []
    plot_w = WIDTH - 90 - RIGHT
    for index, (name, parts) in enumerate(rows.items()):
        y = TOP + 26 * index
        total = sum(parts.values()) or 1
        x = 90.0
        body.append(_text(84, y + 14, f"v{name}", "end"))
        for part, count in parts.items():
            width = count / total * plot_w
            body.append(
                f'<rect x="{x:.1f}" y="{y:.1f}" width="{width:.1f}" height="18" fill="{colours[part]}">'
                f"<title>{escape(part)}: {count} ({count / total:.0%})</title></rect>"
            )
            if width > 60:
                body.append(_text(x + 4, y + 13, f"{part} {count / total:.0%}", fill="#fff"))
            x += width
    return _svg(body, title, height=height)


def histogram_pair(edges: list[float], reference: list[float], live: list[int], title: str) -> Markup:
    """Reference (validation) and live shares per reference bin, side by side."""
    total = sum(live) or 1
    shares = [count / total for count in live]
    bins = len(reference)
    top = max([*reference, *shares, 1e-9]) * 1.1
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM
    slot = plot_w / max(bins, 1)
    body = _axes(top, ".0%", WIDTH, HEIGHT)
    for index in range(bins):
        for offset, (value, fill) in enumerate(((reference[index], "#adb5bd"), (shares[index], PALETTE[0]))):
            height = value / top * plot_h
            x = LEFT + index * slot + 2 + offset * (slot - 4) / 2
            body.append(
                f'<rect x="{x:.1f}" y="{HEIGHT - BOTTOM - height:.1f}" width="{(slot - 4) / 2:.1f}" '
                f'height="{height:.1f}" fill="{fill}"/>'
            )
        if index < len(edges) and bins <= 12:
            body.append(_text(LEFT + (index + 1) * slot, HEIGHT - 8, f"{edges[index]:.2g}", "middle", 9))
    body.append(_text(WIDTH - RIGHT, TOP + 8, "grey: validation   blue: live", "end"))
    return _svg(body, title)


def intervals(rows: list[tuple[str, float | None, list[float | None]]], title: str) -> Markup:
    """Point estimates with their intervals on [0, 1], one row each (live sensitivity, specificity...)."""
    height = TOP + BOTTOM + 22 * max(len(rows), 1)
    plot_w = WIDTH - 150 - RIGHT
    body = [_text(150 + f * plot_w, height - 6, f"{f:.1f}", "middle") for f in (0, 0.5, 1)]
    for index, (name, value, (low, high)) in enumerate(rows):
        y = TOP + 22 * index + 8
        body.append(_text(144, y + 4, name, "end"))
        if value is None:
            body.append(_text(150, y + 4, "no labels yet"))
            continue
        if low is not None and high is not None:
            body.append(
                f'<line x1="{150 + low * plot_w:.1f}" x2="{150 + high * plot_w:.1f}" y1="{y}" y2="{y}" '
                f'stroke="{PALETTE[0]}" stroke-width="2"/>'
            )
        body.append(f'<circle cx="{150 + value * plot_w:.1f}" cy="{y}" r="4" fill="{PALETTE[0]}"/>')
    return _svg(body, title, height=height)
