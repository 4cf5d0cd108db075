"""A report per person and night: a PNG of the last 30 and 90 days and a short HTML page.

The job draws its reports in a child process (`write_reports`, `python -m
edge.apps.nightly.report` with the trends as JSON on stdin): matplotlib's import and
renderer cost about 30 MB, which then never add to the job's own peak (issue 13: under
150 MB with the models loaded).

The plot (matplotlib, the optional `report` extra) has two columns (30 and 90 days) and
three rows: the PHQ-8 estimate with its band (mu +/- 1.96 sigma) and the personal baseline,
the pause ratio with the speaking-rate proxy, the pitch (F0) mean with the loudness. Days
without data are shaded grey, days inside a flagged run are marked red. Without matplotlib
the HTML page is still written, says the plot is missing and how to get it.
"""
from __future__ import annotations

import html
import io
import json
import subprocess
import sys
from datetime import date, timedelta
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from edge import DEMO_WEIGHTS_NOTICE, SCREENING_DISCLAIMER, private_dir, write_atomic, write_text_atomic
from edge.apps.nightly.trends import MEASURES, Trend
from edge.rules.phq8 import INTERVAL_Z, PHQ8_MAX, phq8_interval

REPORT_EXTRA_HINT = "pip install 'edge-depression-screening[report]' (matplotlib)"
WINDOWS_DAYS = (30, 90)


def matplotlib_missing() -> Optional[str]:
    """None when plots can be drawn, else the one-line reason and fix."""
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        return f"plots need matplotlib, which is not installed: {REPORT_EXTRA_HINT}"
    return None


def _d(text: str) -> date:
    return date(int(text[:4]), int(text[5:7]), int(text[8:10]))


def _series(trend: Trend, column: str, first: date, end: date) -> Tuple[List[date], List[float]]:
    """Every calendar day from `first` to `end`, NaN where there is no value (lines break there)."""
    values = {row["day"]: row.get(column) for row in trend.days}
    xs = [first + timedelta(days=k) for k in range((end - first).days + 1)]
    ys = [float("nan") if values.get(x.isoformat()) is None else float(values[x.isoformat()]) for x in xs]
    return xs, ys


def _gaps(first: date, end: date, with_data) -> List[Tuple[date, date]]:
    """Runs of consecutive days without data between `first` and `end`, as (first, last)."""
    spans: List[Tuple[date, date]] = []
    day = first
    while day <= end:
        if day not in with_data:
            if spans and spans[-1][1] == day - timedelta(days=1):
                spans[-1] = (spans[-1][0], day)
            else:
                spans.append((day, day))
        day += timedelta(days=1)
    return spans


def draw_png(trend: Trend, night: str) -> bytes:
    # The object API with the Agg canvas, not pyplot: no global figure state, less memory.
    from matplotlib import dates as mdates
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    end = _d(night)
    with_data = {_d(r["day"]) for r in trend.days}
    fig = Figure(figsize=(12, 8))
    FigureCanvasAgg(fig)
    axes = fig.subplots(3, 2, sharex="col", squeeze=False)
    try:
        for col, window in enumerate(WINDOWS_DAYS):
            first = end - timedelta(days=window - 1)
            for row in range(3):
                ax = axes[row][col]
                for span_first, span_last in _gaps(first, end, with_data):  # days without data, shaded
                    ax.axvspan(mdates.date2num(span_first) - 0.5, mdates.date2num(span_last) + 0.5, color="0.85",
                               lw=0, zorder=0)
                ax.set_xlim(mdates.date2num(first) - 1, mdates.date2num(end) + 1)
                ax.xaxis_date()
                ax.grid(alpha=0.3)
            ax = axes[0][col]
            xs, mus = _series(trend, "phq8_mu", first, end)
            _, sigmas = _series(trend, "phq8_sigma", first, end)
            if any(m == m for m in mus):
                nan = float("nan")
                bands = [(nan, nan) if m != m else phq8_interval(m, s) for m, s in zip(mus, sigmas)]
                low, high = [b[0] for b in bands], [b[1] for b in bands]
                ax.fill_between(xs, low, high, color="tab:blue", alpha=0.2, label="95 % band")
                ax.plot(xs, mus, "o-", color="tab:blue", ms=3, label="PHQ-8 estimate")
                flagged = set(trend.flagged_days.get("phq8_mu", []))
                fx = [x for x in xs if x.isoformat() in flagged]
                fy = [m for x, m in zip(xs, mus) if x.isoformat() in flagged]
                if fx:
                    ax.plot(fx, fy, "o", color="tab:red", ms=6, label="flagged")
            base = trend.baseline.means.get("phq8_mu")
            if base is not None and trend.baseline.ready:
                ax.axhline(base, color="0.4", ls="--", lw=1, label="baseline")
            ax.set_ylim(0, PHQ8_MAX)
            ax.set_title(f"last {window} days (grey: no data)")
            ax.set_ylabel("PHQ-8 estimate")
            ax.legend(loc="upper left", fontsize=7)
            _pair(axes[1][col], trend, first, end, "pause_ratio", "speaking_rate")
            _pair(axes[2][col], trend, first, end, "f0_mean_st", "loudness")
            for label in axes[2][col].get_xticklabels():
                label.set_rotation(30)
        fig.suptitle(f"person {trend.person}, night {night}: {SCREENING_DISCLAIMER}", fontsize=10)
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=80)
        return buffer.getvalue()
    finally:
        fig.clear()


def _pair(ax, trend: Trend, first: date, end: date, left: str, right: str) -> None:
    for column, axis, colour in ((left, ax, "tab:green"), (right, ax.twinx(), "tab:orange")):
        label, unit = MEASURES[column][0], MEASURES[column][1]
        xs, ys = _series(trend, column, first, end)
        if any(y == y for y in ys):
            axis.plot(xs, ys, "o-", color=colour, ms=3)
            flagged = set(trend.flagged_days.get(column, []))
            fx = [(x, y) for x, y in zip(xs, ys) if x.isoformat() in flagged]
            if fx:
                axis.plot([x for x, _ in fx], [y for _, y in fx], "o", color="tab:red", ms=6)
        axis.set_ylabel(f"{label}{' (' + unit + ')' if unit else ''}", color=colour, fontsize=8)


def _fmt(value, digits: int = 2) -> str:
    return "no data" if value is None else f"{value:.{digits}f}"


def write_report(trend: Trend, night: str, folder: Path, demo_weights: bool,
                 plot: bool = True) -> Dict[str, Optional[str]]:
    """Write `<folder>/<night>.png` (when matplotlib is there) and `<folder>/<night>.html`.
    Returns {"html": path, "png": path or None, "note": why no PNG or None}."""
    private_dir(Path(folder).parent)
    folder = private_dir(folder)
    note = matplotlib_missing() if plot else "not drawn"
    png_name = f"{night}.png"
    if note is None:
        data = draw_png(trend, night)
        write_atomic(folder / png_name, lambda f: f.write(data), binary=True)
    latest = trend.latest or {}
    e = html.escape
    lines = ["<!doctype html>", "<html><head><meta charset='utf-8'>",
             f"<title>Night {e(night)}: person {e(trend.person)}</title></head><body>",
             f"<h1>Night {e(night)}: person {e(trend.person)}</h1>",
             f"<p><strong>{e(SCREENING_DISCLAIMER)}</strong>"
             + (f" PHQ-8 figures come from <strong>{e(DEMO_WEIGHTS_NOTICE)}</strong>." if demo_weights else "")
             + "</p>"]
    if latest:
        lines.append(f"<p>Latest day with data: {e(latest['day'])}, {latest['recordings']} recording(s), "
                     f"{latest['audio_s']:.0f} s of audio. PHQ-8 estimate {_fmt(latest.get('phq8_mu'), 1)}"
                     + (f" &plusmn; {INTERVAL_Z * latest['phq8_sigma']:.1f}" if latest.get("phq8_sigma") else "")
                     + f"; pause ratio {_fmt(latest.get('pause_ratio'), 3)}; pitch mean "
                     f"{_fmt(latest.get('f0_mean_st'))} semitones.</p>")
    base = trend.baseline
    lines.append(f"<p>Baseline ({e(base.mode)}, {base.days_used} day(s) with data): "
                 + (f"PHQ-8 {_fmt(base.means.get('phq8_mu'), 1)}." if base.ready else "still forming.") + "</p>")
    if trend.flags:
        lines.append("<h2>Flags</h2><ul>" + "".join(f"<li>{e(f.message)}</li>" for f in trend.flags) + "</ul>")
    else:
        lines.append("<p>No flags: nothing moved beyond the personal baseline for long enough.</p>")
    if note is None:
        lines.append(f"<p><a href='{e(png_name)}'><img src='{e(png_name)}' alt='trend plot, last 30 and 90 days' "
                     "width='960'></a></p>")
    else:
        lines.append(f"<p>No plot: {e(note)}</p>")
    lines.append("</body></html>")
    html_path = write_text_atomic(folder / f"{night}.html", "\n".join(lines) + "\n")
    return {"html": str(html_path), "png": str(folder / png_name) if note is None else None, "note": note}


def write_reports(trends: List[Trend], night: str, reports_dir: Path, demo_weights: bool,
                  timeout_s: float = 600.0) -> List[Dict[str, Optional[str]]]:
    """Every person's report, drawn in a child process (see the module docstring). If the
    child fails, the pages are written here without plots and say why."""
    request = {"night": night, "reports_dir": str(reports_dir), "demo_weights": demo_weights,
               "trends": [t.to_json() for t in trends]}
    try:
        proc = subprocess.run([sys.executable, "-m", "edge.apps.nightly.report"], input=json.dumps(request),
                              capture_output=True, text=True, timeout=timeout_s)
        if proc.returncode == 0:
            return json.loads(proc.stdout)
        why = (proc.stderr.strip().splitlines() or [f"exit code {proc.returncode}"])[-1]
    except (OSError, subprocess.TimeoutExpired, ValueError) as exc:
        why = str(exc)
    out = []
    for trend in trends:
        paths = write_report(trend, night, Path(reports_dir) / trend.person, demo_weights, plot=False)
        paths["note"] = f"the plot could not be drawn: {why}"
        out.append(paths)
    return out


def _main() -> int:
    request = json.loads(sys.stdin.read())
    out = [write_report(Trend.from_json(t), request["night"], Path(request["reports_dir"]) / t["person"],
                        request["demo_weights"]) for t in request["trends"]]
    sys.stdout.write(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(_main())
