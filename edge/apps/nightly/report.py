"""A report per person and night: a PNG of the last 30 and 90 days and a short HTML page.

The job draws its reports in a child process (`write_reports`, `python -m
edge.apps.nightly.report` with the trends as JSON on stdin): matplotlib's import and
renderer cost about 30 MB, which then never add to the job's own peak (issue 13: under
150 MB with the models loaded).

The plot (matplotlib, the optional `report` extra), made for a nurse reading it in a minute:
two columns (30 and 90 days), one measure per row in units a clinician knows (pause time as
% of speaking time, speaking rate, pitch in Hz, loudness in dB relative to the person's
baseline), each with the personal baseline band (its mean, and the range a day may take
without counting toward a flag) and its own flag marks (a red ring on the days of that
measure's flagged run); the PHQ-8 estimate comes last, with its interval written out as
what it is (edge.rules.phq8's INTERVAL_Z), the questionnaires the person answered (black
diamonds), and, with demo weights, "DEMO WEIGHTS: NOT FOR SCREENING" on the panel itself.
Days before enrolment (light blue) are told apart from days without a recording (grey).
No bare "+/-" anywhere: each band says what it is. Without matplotlib the HTML page is
still written, says the plot is missing and how to get it. The HTML page gives the flags
first (latest value, recent mean, baseline), then the latest day (with the recording's SNR
and, for a measure without a reading, why).
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
from edge.apps.nightly.trends import DISPLAY, VOICE_MEASURES, Trend, display_band, display_value
from edge.rules.flags import threshold
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


# The panels, top to bottom: one measure each, in clinician units; the PHQ-8 estimate last.
PANELS = ("pause_ratio", "speaking_rate", "f0_mean_st", "loudness", "phq8_mu")
BAND_NOTE = ("band: the personal baseline mean, and the range a day may take without counting toward a flag "
             "(baseline mean plus or minus the larger of 2 day-to-day SDs and the measure's floor)")
PHQ8_NOTE = (f"shaded: the estimate's interval (estimate plus or minus {INTERVAL_Z} sigma, clipped to 0-24; it held "
             "another night's reading of an unchanged voice 95 % of the time, edge.rules.phq8)")
ENROLMENT_COLOUR, NO_DATA_COLOUR = "#dde8f5", "0.85"


def _display_series(trend: Trend, measure: str, first: date, end: date):
    """_series in DISPLAY units (NaN where there is no value)."""
    xs, ys = _series(trend, measure, first, end)
    mean = trend.baseline.means.get(measure)
    shown = [None if y != y else display_value(measure, y, mean) for y in ys]
    return xs, [float("nan") if v is None else v for v in shown]


def _shade_days(ax, mdates, first: date, end: date, enrolled: Optional[date], with_data) -> None:
    """Days before enrolment (light blue) told apart from days without data (grey)."""
    if enrolled is None or enrolled > end:
        ax.axvspan(mdates.date2num(first) - 0.5, mdates.date2num(end) + 0.5, color=ENROLMENT_COLOUR, lw=0, zorder=0)
        return
    if enrolled > first:
        ax.axvspan(mdates.date2num(first) - 0.5, mdates.date2num(enrolled) - 0.5, color=ENROLMENT_COLOUR, lw=0,
                   zorder=0)
    for span_first, span_last in _gaps(max(first, enrolled), end, with_data):
        ax.axvspan(mdates.date2num(span_first) - 0.5, mdates.date2num(span_last) + 0.5, color=NO_DATA_COLOUR, lw=0,
                   zorder=0)


def _voice_panel(ax, trend: Trend, measure: str, first: date, end: date) -> None:
    label, unit = DISPLAY[measure]
    xs, ys = _display_series(trend, measure, first, end)
    base = trend.baseline
    mean = base.means.get(measure)
    if base.ready and mean is not None:
        band = display_band(measure, mean, threshold(measure, mean, base.sds.get(measure), 0.0))
        centre = display_value(measure, mean, mean)
        if band is not None and None not in band:
            ax.axhspan(band[0], band[1], color="tab:green", alpha=0.15, lw=0, label="personal band")
            ax.axhline(centre, color="tab:green", ls="--", lw=1, label="baseline mean")
    if any(y == y for y in ys):
        ax.plot(xs, ys, "o-", color="tab:blue", ms=3, lw=1, label=label)
        flagged = set(trend.flagged_days.get(measure, []))
        fx = [(x, y) for x, y in zip(xs, ys) if x.isoformat() in flagged and y == y]
        if fx:
            ax.plot([x for x, _ in fx], [y for _, y in fx], "o", mfc="none", mec="tab:red", mew=2, ms=8,
                    label="flagged (this measure)")
    else:
        ax.text(0.5, 0.5, "no reading in this window", transform=ax.transAxes, ha="center", va="center",
                color="0.4")
    # Days with a recording but no reading of this measure (too little voice, too noisy): an x
    # on the axis, so they are not mistaken for days without a recording.
    silent = [_d(r["day"]) for r in trend.days if r.get(measure) is None and first <= _d(r["day"]) <= end]
    if silent:
        ax.plot(silent, [0.03] * len(silent), "x", color="0.3", ms=6, transform=ax.get_xaxis_transform(),
                label="no reading (why: see the page)")
    ax.set_ylabel(unit, fontsize=8)
    ax.set_title(f"{label} ({unit})", fontsize=9, loc="left")


def _phq8_panel(ax, trend: Trend, first: date, end: date, demo_weights: bool) -> None:
    xs, mus = _series(trend, "phq8_mu", first, end)
    _, sigmas = _series(trend, "phq8_sigma", first, end)
    if any(m == m for m in mus):
        nan = float("nan")
        bands = [(nan, nan) if m != m else phq8_interval(m, s) for m, s in zip(mus, sigmas)]
        ax.fill_between(xs, [b[0] for b in bands], [b[1] for b in bands], color="tab:purple", alpha=0.2,
                        label=f"interval (estimate plus or minus {INTERVAL_Z} sigma)")
        ax.plot(xs, mus, "o-", color="tab:purple", ms=3, lw=1, label="model estimate")
        flagged = set(trend.flagged_days.get("phq8_mu", []))
        fx = [(x, m) for x, m in zip(xs, mus) if x.isoformat() in flagged and m == m]
        if fx:
            ax.plot([x for x, _ in fx], [m for _, m in fx], "o", mfc="none", mec="tab:red", mew=2, ms=8,
                    label="flagged (this measure)")
    base = trend.baseline.means.get("phq8_mu")
    if base is not None and trend.baseline.ready:
        ax.axhline(base, color="tab:green", ls="--", lw=1, label="baseline mean")
    answered = [(d, lab["total"]) for lab in trend.labels for d in [_d(lab["date"])] if first <= d <= end]
    if answered:
        ax.plot([d for d, _ in answered], [t for _, t in answered], "D", color="black", ms=6,
                label="PHQ-8 questionnaire (answered)")
    ax.set_ylim(0, PHQ8_MAX)
    ax.set_ylabel("points (0-24)", fontsize=8)
    ax.set_title("PHQ-8 estimate from the voice model (points, 0-24)", fontsize=9, loc="left")
    if demo_weights:
        ax.text(0.5, 0.5, "DEMO WEIGHTS: NOT FOR SCREENING", transform=ax.transAxes, ha="center", va="center",
                fontsize=16, color="tab:red", alpha=0.5, fontweight="bold")


def draw_png(trend: Trend, night: str, demo_weights: bool = True) -> bytes:
    """The report's figure as PNG bytes (see build_figure)."""
    fig = build_figure(trend, night, demo_weights)
    try:
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=80)
        return buffer.getvalue()
    finally:
        fig.clear()


def build_figure(trend: Trend, night: str, demo_weights: bool = True):
    """The report's figure: 30 and 90 days side by side; one measure per row (PANELS)."""
    # The object API with the Agg canvas, not pyplot: no global figure state, less memory.
    from matplotlib import dates as mdates
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    end = _d(night)
    with_data = {_d(r["day"]) for r in trend.days}
    enrolled = min(with_data) if with_data else None
    fig = Figure(figsize=(12, 15))
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(PANELS), 2, sharex="col", squeeze=False)
    for col, window in enumerate(WINDOWS_DAYS):
        first = end - timedelta(days=window - 1)
        for row, measure in enumerate(PANELS):
            ax = axes[row][col]
            _shade_days(ax, mdates, first, end, enrolled, with_data)
            ax.set_xlim(mdates.date2num(first) - 1, mdates.date2num(end) + 1)
            ax.xaxis_date()
            ax.grid(alpha=0.3)
            if measure == "phq8_mu":
                _phq8_panel(ax, trend, first, end, demo_weights)
            else:
                _voice_panel(ax, trend, measure, first, end)
            if col == 0:
                ax.legend(loc="upper left", fontsize=6, framealpha=0.8)
        axes[0][col].annotate(f"last {window} days", (0.5, 1.25), xycoords="axes fraction", ha="center",
                              fontsize=10, fontweight="bold")
        for label in axes[-1][col].get_xticklabels():
            label.set_rotation(30)
    title = f"person {trend.person}, night {night}: {SCREENING_DISCLAIMER}"
    if demo_weights:
        title += f" PHQ-8 panel: {DEMO_WEIGHTS_NOTICE}."
    fig.suptitle(title, fontsize=10)
    fig.text(0.01, 0.003, "green " + BAND_NOTE + ". PHQ-8 " + PHQ8_NOTE + ". Light blue: before enrolment; "
             "grey: no recording that day; red ring: day inside a flagged run of that measure.",
             fontsize=7, wrap=True)
    fig.tight_layout(rect=(0, 0.025, 1, 0.97))
    return fig


def _latest_lines(trend: Trend) -> List[str]:
    """The latest day's readings in clinician units; a missing one says why."""
    latest = trend.latest or {}
    mean = trend.baseline.means
    digits = {"pause_ratio": 1, "speaking_rate": 2, "f0_mean_st": 0, "f0_var": 1, "loudness": 1, "jitter": 2,
              "shimmer_db": 2}
    reasons = latest.get("reasons") or {}
    out = []
    for measure in VOICE_MEASURES:
        label, unit = DISPLAY[measure]
        value = display_value(measure, latest.get(measure), mean.get(measure))
        if value is not None:
            out.append(f"{label}: {value:.{digits[measure]}f} {unit}")
        elif latest.get(measure) is not None:  # loudness before a baseline exists
            out.append(f"{label}: no reading yet, because the personal baseline is still forming")
        else:
            out.append(f"{label}: no reading, because {reasons.get(measure, 'there was too little voice')}")
    return out
def write_report(trend: Trend, night: str, folder: Path, demo_weights: bool,
                 plot: bool = True) -> Dict[str, Optional[str]]:
    """Write `<folder>/<night>.png` (when matplotlib is there) and `<folder>/<night>.html`.
    Returns {"html": path, "png": path or None, "note": why no PNG or None}."""
    private_dir(Path(folder).parent)
    folder = private_dir(folder)
    note = matplotlib_missing() if plot else "not drawn"
    png_name = f"{night}.png"
    if note is None:
        data = draw_png(trend, night, demo_weights)
        write_atomic(folder / png_name, lambda f: f.write(data), binary=True)
    latest = trend.latest or {}
    e = html.escape
    lines = ["<!doctype html>", "<html><head><meta charset='utf-8'>",
             f"<title>Night {e(night)}: person {e(trend.person)}</title></head><body>",
             f"<h1>Night {e(night)}: person {e(trend.person)}</h1>",
             f"<p><strong>{e(SCREENING_DISCLAIMER)}</strong>"
             + (f" PHQ-8 figures come from <strong>{e(DEMO_WEIGHTS_NOTICE)}</strong>." if demo_weights else "")
             + "</p>"]
    base = trend.baseline
    if trend.flags:
        lines.append("<h2>Flags</h2><ul>" + "".join(f"<li>{e(f.message)}</li>" for f in trend.flags) + "</ul>")
    else:
        lines.append("<p>No flags: nothing moved beyond the personal baseline for long enough.</p>")
    if latest:
        snr = latest.get("snr_db")
        lines.append(f"<h2>Latest day with data: {e(latest['day'])}</h2><p>{latest['recordings']} recording(s), "
                     f"{latest['audio_s']:.0f} s of audio; speech "
                     + (f"{snr:.0f} dB above the room's noise floor (SNR)" if snr is not None else
                        "level above the noise floor: not measured")
                     + ".</p><ul>" + "".join(f"<li>{e(line)}</li>" for line in _latest_lines(trend)) + "</ul>")
    lines.append(f"<p>Baseline ({e(base.mode)}, {base.days_used} day(s) with data): "
                 + ("ready: the band in each plot is its mean and the range a day may take without counting "
                    "toward a flag." if base.ready else "still forming: nothing is flagged yet.") + "</p>")
    if latest:
        mu, sigma = latest.get("phq8_mu"), latest.get("phq8_sigma")
        if mu is not None and sigma is not None:
            low, high = phq8_interval(mu, sigma)
            phq8 = (f"PHQ-8 estimate from the voice model: {mu:.1f} points (interval {low:.1f} to {high:.1f}: "
                    f"the estimate plus or minus {INTERVAL_Z} sigma, which held another night's reading of an "
                    "unchanged voice 95 % of the time)")
        else:
            phq8 = "PHQ-8 estimate from the voice model: none on the latest day (the model abstained)"
        lines.append(f"<p>{e(phq8)}" + (f" <strong>({e(DEMO_WEIGHTS_NOTICE)})</strong>" if demo_weights else "")
                     + ".</p>")
    if trend.labels:
        last = trend.labels[-1]
        lines.append(f"<p>PHQ-8 questionnaire answered by the person: {last['total']} points on "
                     f"{e(last['date'])} ({len(trend.labels)} questionnaire(s) in all; drawn as black diamonds)."
                     "</p>")
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
