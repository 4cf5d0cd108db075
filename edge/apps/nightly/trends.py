"""A person's trend: the personal baseline and the flags that say what moved, and by how much.

Input: the person's day rows (edge.apps.nightly.db, one per day with data). Baseline
(`nightly.baseline`):
- `first_days`: the days with data among the first `baseline_days` calendar days from the
  person's first recording; days after that are compared with it;
- `rolling`: the days with data in the `baseline_days` calendar days before the recent run
  of days that is being judged.
It needs MIN_BASELINE_DAYS (edge.rules.flags) days with data; until then nothing is
flagged ("baseline forming").

The rule that decides a flag (thresholds, direction, `flag_days` days with data in a row)
has its home in edge.rules.flags; this module walks the person's days through it. A flag
names the measure, its latest value, the mean of its last `flag_days` days with data (the
"recent mean": where the person is now, not the mean of a long run) and the baseline, in
units a clinician knows (DISPLAY: pause time as % of speaking time, pitch in Hz, loudness in
dB relative to the person's baseline), and the personal band outside which a day counts. It
describes a change in signals to review with the person; it is never a diagnosis.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from datetime import date, timedelta
from typing import Dict, List, Optional, Tuple

from edge import SCREENING_DISCLAIMER
from edge.rules import flags as rule
from edge.rules.flags import FLOORS

# column -> (label, unit, floor of the change that can flag (edge.rules.flags.FLOORS), digits)
MEASURES: Dict[str, Tuple[str, str, float, int]] = {
    "phq8_mu": ("PHQ-8 estimate", "points", FLOORS["phq8_mu"], 1),
    "pause_ratio": ("pause ratio", "", FLOORS["pause_ratio"], 3),
    "speaking_rate": ("speaking-rate proxy", "voiced segments/s", FLOORS["speaking_rate"], 2),
    "f0_mean_st": ("pitch (F0) mean", "semitones", FLOORS["f0_mean_st"], 2),
    "f0_var": ("pitch variability", "stddev/mean", FLOORS["f0_var"], 3),
    "loudness": ("loudness", "", FLOORS["loudness"], 3),
    "jitter": ("jitter", "", FLOORS["jitter"], 4),
    "shimmer_db": ("shimmer", "dB", FLOORS["shimmer_db"], 2),
}
VOICE_MEASURES = tuple(m for m in MEASURES if m != "phq8_mu")

F0_REFERENCE_HZ = 27.5  # eGeMAPS semitones count from 27.5 Hz
# Loudness (eGeMAPS) grows as band power to the 0.33 (openSMILE's cPlp compression), so a
# loudness ratio r is an intensity ratio r ** (1 / 0.33): 10 / 0.33 dB per decade of loudness.
LOUDNESS_DB_PER_DECADE = 10.0 / 0.33

# column -> (label, unit) as reports and flag messages show them (clinician units).
DISPLAY: Dict[str, Tuple[str, str]] = {
    "phq8_mu": ("PHQ-8 estimate", "points"),
    "pause_ratio": ("pause time", "% of speaking time"),
    "speaking_rate": ("speaking rate", "voiced segments/s"),
    "f0_mean_st": ("pitch (F0) mean", "Hz"),
    "f0_var": ("pitch variability", "% of mean pitch"),
    "loudness": ("loudness", "dB re personal baseline"),
    "jitter": ("jitter", "%"),
    "shimmer_db": ("shimmer", "dB"),
}


def display_value(measure: str, value: Optional[float], baseline_mean: Optional[float] = None) -> Optional[float]:
    """A day's value in the unit of DISPLAY (loudness needs the baseline mean; None without)."""
    if value is None:
        return None
    if measure in ("pause_ratio", "f0_var", "jitter"):
        return 100.0 * value
    if measure == "f0_mean_st":
        return F0_REFERENCE_HZ * 2.0 ** (value / 12.0)
    if measure == "loudness":
        if not baseline_mean or baseline_mean <= 0 or value <= 0:
            return None
        return LOUDNESS_DB_PER_DECADE * math.log10(value / baseline_mean)
    return value


def display_band(measure: str, mean: Optional[float], threshold: Optional[float]) -> Optional[Tuple[float, float]]:
    """The personal band (baseline mean -/+ the flag threshold) in DISPLAY units, or None.
    A day outside it counts toward a flag; the PHQ-8 band has no lower edge (only a rise flags)."""
    if mean is None or threshold is None:
        return None
    low, high = mean - threshold, mean + threshold
    if measure == "loudness":
        return (display_value(measure, max(low, 1e-9), mean), display_value(measure, high, mean))
    if measure == rule.PHQ8_MEASURE:
        return (float("-inf"), high)
    return (display_value(measure, low), display_value(measure, high))


@dataclass
class Baseline:
    mode: str
    days_wanted: int
    days_used: int = 0
    first_day: Optional[str] = None
    last_day: Optional[str] = None
    means: Dict[str, Optional[float]] = field(default_factory=dict)
    sds: Dict[str, Optional[float]] = field(default_factory=dict)

    @property
    def ready(self) -> bool:
        return rule.baseline_ready(self.days_used)

    def to_dict(self) -> Dict:
        return {"mode": self.mode, "days_wanted": self.days_wanted, "days_used": self.days_used,
                "ready": self.ready, "first_day": self.first_day, "last_day": self.last_day,
                "phq8_mu": _round(self.means.get("phq8_mu"), 2),
                "voice": {m: _round(self.means.get(m), 4) for m in VOICE_MEASURES}}


@dataclass
class Flag:
    measure: str
    label: str
    direction: str  # "up" | "down"
    since: str  # first day of the run
    days: int  # days with data in the run
    baseline: float
    recent: float
    change: float
    threshold: float
    unit: str
    message: str
    latest: Optional[float] = None  # the measure's latest day with data (the run reaches it)
    latest_day: Optional[str] = None
    run_mean: Optional[float] = None  # the mean over the whole run (`recent`: its last flag_days days)

    def to_dict(self) -> Dict:
        digits = MEASURES[self.measure][3] + 1
        return {"measure": self.measure, "label": self.label, "direction": self.direction, "since": self.since,
                "days": self.days, "baseline": round(self.baseline, digits), "recent": round(self.recent, digits),
                "change": round(self.change, digits), "threshold": round(self.threshold, digits),
                "unit": self.unit, "message": self.message}


@dataclass
class Trend:
    person: str
    baseline: Baseline
    flags: List[Flag]
    days: List[Dict]  # the rows, oldest first
    flagged_days: Dict[str, List[str]]  # measure -> days inside a flagged run (for plots)
    labels: List[Dict] = field(default_factory=list)  # PHQ-8 questionnaires given: {"date", "total", "answers"}

    @property
    def latest(self) -> Optional[Dict]:
        return self.days[-1] if self.days else None

    def to_json(self) -> Dict:
        """Everything a report needs, JSON-ready (the report is drawn in a child process)."""
        return {"person": self.person, "baseline": asdict(self.baseline), "flags": [asdict(f) for f in self.flags],
                "days": self.days, "flagged_days": self.flagged_days, "labels": self.labels}

    @classmethod
    def from_json(cls, data: Dict) -> Trend:
        return cls(data["person"], Baseline(**data["baseline"]), [Flag(**f) for f in data["flags"]], data["days"],
                   data["flagged_days"], data.get("labels", []))


def _round(value: Optional[float], digits: int) -> Optional[float]:
    return None if value is None else round(float(value), digits)


def _day(text: str) -> date:
    return date(int(text[:4]), int(text[5:7]), int(text[8:10]))


def _stats(values: List[float]) -> Tuple[Optional[float], Optional[float]]:
    if not values:
        return None, None
    mean = sum(values) / len(values)
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1)) if len(values) > 1 else 0.0
    return mean, sd


def baseline_of(rows: List[Dict], mode: str, baseline_days: int) -> Baseline:
    base = Baseline(mode, baseline_days)
    if not rows:
        return base
    base.first_day = rows[0]["day"]
    base.last_day = (_day(rows[0]["day"]) + timedelta(days=baseline_days - 1)).isoformat()
    base.days_used = len(rows)
    for measure in MEASURES:
        base.means[measure], base.sds[measure] = _stats([r[measure] for r in rows if r.get(measure) is not None])
    return base


def _first_days_rows(days: List[Dict], baseline_days: int) -> List[Dict]:
    if not days:
        return []
    end = _day(days[0]["day"]) + timedelta(days=baseline_days)
    return [r for r in days if _day(r["day"]) < end]


def _rolling_rows(days: List[Dict], upto: int, baseline_days: int) -> List[Dict]:
    """Days with data in the baseline_days calendar days before days[upto]."""
    start = _day(days[upto]["day"]) - timedelta(days=baseline_days)
    return [r for r in days[:upto] if _day(r["day"]) >= start]


def evaluate(person: str, days: List[Dict], baseline: str = "first_days", baseline_days: int = 14,
             flag_margin: float = 3.0, flag_days: int = 3) -> Trend:
    """The person's baseline and flags as of their latest day (the rule: edge.rules.flags)."""
    first_rows = _first_days_rows(days, baseline_days)
    start = len(first_rows) if baseline == "first_days" else 0
    flagged: Dict[str, List[str]] = {m: [] for m in MEASURES}
    runs: Dict[str, List[Tuple[int, int]]] = {m: [] for m in MEASURES}  # (index, direction) of the open run
    base_at_end = baseline_of(first_rows, "first_days", baseline_days) if baseline == "first_days" else None
    bases: Dict[int, Baseline] = {}
    for i in range(start, len(days)):
        if baseline == "first_days":
            base = base_at_end
        else:
            # The rolling baseline ends before the run being judged (a drift must not become its own baseline).
            open_runs = [runs[m][0][0] for m in MEASURES if runs[m]]
            first_of_run = min(open_runs) if open_runs else i
            base = bases.get(first_of_run) or baseline_of(_rolling_rows(days, first_of_run, baseline_days),
                                                          "rolling", baseline_days)
            bases[first_of_run] = base
        bases[i] = bases.get(i, base)
        if not base.ready:
            continue
        for measure in MEASURES:
            if days[i].get(measure) is None:
                continue  # no reading that day: the run neither grows nor breaks
            direction = rule.beyond(measure, days[i].get(measure), base.means.get(measure), base.sds.get(measure),
                                    flag_margin)
            runs[measure] = run = rule.extend_run(runs[measure], i, direction)
            if rule.run_long_enough(run, flag_days):
                flagged[measure].extend(days[j]["day"] for j, _ in run if days[j]["day"] not in flagged[measure])
    last = len(days) - 1
    flags: List[Flag] = []
    final_base = base_at_end if baseline == "first_days" else None
    for measure, (label, unit, _, _) in MEASURES.items():
        run = runs[measure]
        last_with = max((j for j in range(len(days)) if days[j].get(measure) is not None), default=-1)
        if not rule.flag_raised(run, flag_days, last_with):
            continue
        base = final_base or bases[run[0][0]]
        values = [days[j][measure] for j, _ in run]
        recent_values = values[-flag_days:]  # where the person is now, not the whole run
        recent = sum(recent_values) / len(recent_values)
        mean = base.means[measure]
        change = recent - mean
        threshold = rule.threshold(measure, mean, base.sds.get(measure), flag_margin)
        direction = "up" if change > 0 else "down"
        latest, latest_day = values[-1], days[run[-1][0]]["day"]
        message = _flag_message(measure, direction, len(run), days[run[0][0]]["day"], latest, latest_day,
                                recent, len(recent_values), mean, threshold)
        flags.append(Flag(measure, label, direction, days[run[0][0]]["day"], len(run), mean, recent, change,
                          threshold, unit, message, latest, latest_day, sum(values) / len(values)))
    if baseline == "first_days":
        reported = base_at_end or baseline_of([], "first_days", baseline_days)
    else:
        reported = bases.get(last) or baseline_of(_rolling_rows(days, last, baseline_days) if days else [],
                                                  "rolling", baseline_days)
    return Trend(person, reported, flags, days, flagged)


def _flag_message(measure: str, direction: str, run_days: int, since: str, latest: float, latest_day: str,
                  recent: float, recent_days: int, mean: float, threshold: float) -> str:
    """One flag in clinician units: the latest value, the recent mean and the baseline, and the
    personal band outside which a day counts (written out; no bare +/-)."""
    label = DISPLAY[measure][0]
    unit = {"pause_ratio": "%", "f0_var": "%", "loudness": "dB"}.get(measure, DISPLAY[measure][1])
    digits = {"phq8_mu": 1, "pause_ratio": 1, "speaking_rate": 2, "f0_mean_st": 0, "f0_var": 1, "loudness": 1,
              "jitter": 2, "shimmer_db": 2}[measure]

    def show(value: Optional[float]) -> str:
        return "?" if value is None else f"{value:.{digits}f} {unit}"

    band = display_band(measure, mean, threshold)
    if measure == rule.PHQ8_MEASURE:
        band_text = f"a day counts above {band[1]:.1f} points (baseline + {threshold:.1f})"
    else:
        band_text = f"a day counts outside {band[0]:.{digits}f} to {band[1]:.{digits}f} {unit}"
    if measure == "loudness":  # shown relative to the baseline itself
        versus = "relative to the baseline"
    else:
        versus = f"vs {show(display_value(measure, mean, mean))} at baseline"
    what = label + (" (as % of speaking time)" if measure == "pause_ratio" else "")
    return (f"{what} {'above' if direction == 'up' else 'below'} the personal baseline for {run_days} days with "
            f"data in a row (since {since}): latest {show(display_value(measure, latest, mean))} ({latest_day}), "
            f"mean of the last {recent_days} days {show(display_value(measure, recent, mean))} {versus} "
            f"({band_text}). A change to review with the person. {SCREENING_DISCLAIMER}")


def days_without_data(days: List[Dict], night: str) -> int:
    """Calendar days from the last day with data up to `night` (0: data on that day)."""
    if not days:
        return -1
    return max(0, (_day(night) - _day(days[-1]["day"])).days)
