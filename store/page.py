"""The operators' page: homes, their device types with detection time and current trust,
a trust-over-time plot per device (inline SVG drawn here, nothing fetched from elsewhere)
and the alert list. Read-only; every text from the database is HTML-escaped."""

import time
from datetime import UTC, datetime
from html import escape

from store import queries
from store.database import Database

MAX_HOMES = 100
MAX_POINTS = 200
PLOT_WIDTH, PLOT_HEIGHT, PLOT_PAD = 260, 64, 4

STYLE = """
body { font-family: sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border-bottom: 1px solid #ddd; padding: 0.25em 0.75em; text-align: left; }
th { background: #f3f3f3; }
td.num { text-align: right; font-variant-numeric: tabular-nums; }
.low { color: #b00020; font-weight: bold; }
svg.trust-plot { background: #fafafa; border: 1px solid #ddd; }
svg.trust-plot polyline { fill: none; stroke: #3465a4; stroke-width: 1.5; }
svg.trust-plot circle { fill: #3465a4; }
svg.trust-plot line.level { stroke: #b00020; stroke-dasharray: 3 3; }
.muted { color: #777; }
"""


def when(seconds: float | None) -> str:
    """A unix time as "YYYY-MM-DD HH:MM:SS" UTC, or a dash."""
    if seconds is None:
        return "-"
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S")


def render(
    db: Database,
    conn,
    *,
    level: float,
    run_level: float = queries.DEFAULT_RUN_LEVEL,
    home: str | None = None,
) -> str:
    """The whole page as HTML."""
    alerts = queries.alerts(db, conn, level=level, run_level=run_level, home=home)
    homes = queries.homes(db, conn, home=home, limit=MAX_HOMES)
    parts = [
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>",
        "<title>iotwatch store</title>",
        f"<style>{STYLE}</style></head><body>",
        "<h1>iotwatch: IoT device types per home</h1>",
        (
            f"<p class='muted'>Generated {when(time.time())} UTC; alert level {level:g}. "
            "Read-only; JSON at <a href='/api/v1/homes'>/api/v1/homes</a>.</p>"
        ),
        _alerts(alerts),
        f"<h2>Homes ({len(homes)}{' shown, more exist' if len(homes) == MAX_HOMES else ''})</h2>",
    ]
    for row in homes:
        devices = queries.devices(db, conn, home=row["home"])
        trust = queries.trust(db, conn, home=row["home"], limit=queries.MAX_LIMIT)
        parts.append(_home(row, devices, trust, level))
    parts.append("</body></html>")
    return "\n".join(parts)


def _alerts(alerts: list[dict]) -> str:
    """The alert table."""
    if not alerts:
        return "<h2>Alerts</h2><p id='no-alerts'>No device type flagged.</p>"
    rows = "".join(
        f"<tr class='alert'><td>{escape(a['home'])}</td><td>{escape(a['device_type'])}</td>"
        f"<td class='num low'>{a['trust']:.3f}</td><td>{when(a['since'])}</td></tr>"
        for a in alerts
    )
    return (
        "<h2>Alerts</h2><table id='alerts'><tr><th>home</th><th>device type</th>"
        f"<th>trust</th><th>flagged since</th></tr>{rows}</table>"
    )


def _home(row: dict, devices: list[dict], trust: list[dict], level: float) -> str:
    """One home's section: its devices with a plot each."""
    series: dict[str, list[dict]] = {}
    for point in trust:
        series.setdefault(point["device_type"], []).append(point)

    lines = []
    for d in devices:
        points = series.get(d["device_type"], [])[-MAX_POINTS:]
        current = "-" if d["trust"] is None else f"{d['trust']:.3f}"
        low = " low" if d["trust"] is not None and d["trust"] < level else ""
        lines.append(
            f"<tr class='device' data-device-type='{escape(d['device_type'])}'>"
            f"<td>{escape(d['device_type'])}</td><td>{when(d['detected'])}</td>"
            f"<td class='num'>{d['hit_time']:.1f}</td><td class='num'>{d['hit_flow']}</td>"
            f"<td class='num{low}'>{current}</td><td>{plot(points, level)}</td></tr>"
        )
    table = (
        (
            "<table><tr><th>device type</th><th>detected (UTC)</th><th>hit-time s</th>"
            "<th>hit-flow</th><th>trust</th><th>trust over time</th></tr>"
            + "".join(lines)
            + "</table>"
        )
        if lines
        else "<p class='muted'>No devices.</p>"
    )
    return (
        f"<section class='home' data-home='{escape(row['home'])}'>"
        f"<h3>{escape(row['home'])}</h3>"
        f"<p class='muted'>agent {escape(row['agent'])}; seen {when(row['first_seen'])}"
        f" to {when(row['last_seen'])}</p>{table}</section>"
    )


def plot(points: list[dict], level: float) -> str:
    """Trust (0..1) against window end as a small SVG: a line, a dot per window and the
    alert level dashed."""
    if not points:
        return "<span class='muted'>no trust windows yet</span>"
    t0, t1 = points[0]["window_end"], points[-1]["window_end"]
    span = (t1 - t0) or 1.0
    inner_w, inner_h = PLOT_WIDTH - 2 * PLOT_PAD, PLOT_HEIGHT - 2 * PLOT_PAD

    def xy(t: float, value: float) -> tuple[float, float]:
        x = PLOT_PAD + (inner_w * (t - t0) / span if len(points) > 1 else inner_w / 2)
        return round(x, 1), round(PLOT_PAD + inner_h * (1.0 - value), 1)

    coords = [xy(p["window_end"], p["trust"]) for p in points]
    level_y = xy(t0, level)[1]
    dots = "".join(
        f"<circle cx='{x}' cy='{y}' r='2'><title>{when(p['window_end'])}: "
        f"{p['trust']:.3f}</title></circle>"
        for (x, y), p in zip(coords, points)
    )
    line = " ".join(f"{x},{y}" for x, y in coords)
    return (
        f"<svg class='trust-plot' width='{PLOT_WIDTH}' height='{PLOT_HEIGHT}' "
        f"viewBox='0 0 {PLOT_WIDTH} {PLOT_HEIGHT}' xmlns='http://www.w3.org/2000/svg' "
        f"role='img' aria-label='trust over time'>"
        f"<line class='level' x1='0' x2='{PLOT_WIDTH}' y1='{level_y}' y2='{level_y}'/>"
        f"<polyline points='{line}'/>{dots}</svg>"
    )
