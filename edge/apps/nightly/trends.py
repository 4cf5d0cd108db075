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
names the measure, the baseline, the recent mean and the change, with units. It describes
a change in signals to review with the person; it is never a diagnosis.
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

    @property
    def latest(self) -> Optional[Dict]:
        return self.days[-1] if self.days else None

    def to_json(self) -> Dict:
        """Everything a report needs, JSON-ready (the report is drawn in a child process)."""
        return {"person": self.person, "baseline": asdict(self.baseline), "flags": [asdict(f) for f in self.flags],
                "days": self.days, "flagged_days": self.flagged_days}

    @classmethod
    def from_json(cls, data: Dict) -> Trend:
        return cls(data["person"], Baseline(**data["baseline"]), [Flag(**f) for f in data["flags"]], data["days"],
                   data["flagged_days"])


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
    for measure, (label, unit, _, digits) in MEASURES.items():
        run = runs[measure]
        last_with = max((j for j in range(len(days)) if days[j].get(measure) is not None), default=-1)
        if not rule.flag_raised(run, flag_days, last_with):
            continue
        base = final_base or bases[run[0][0]]
        values = [days[j][measure] for j, _ in run]
        recent = sum(values) / len(values)
        change = recent - base.means[measure]
        threshold = rule.threshold(measure, base.means.get(measure), base.sds.get(measure), flag_margin)
        direction = "up" if change > 0 else "down"
        suffix = f" {unit}" if unit else ""
        message = (f"{label} {'above' if change > 0 else 'below'} the personal baseline for {len(run)} days with "
                   f"data in a row (since {days[run[0][0]]['day']}): {recent:.{digits}f}{suffix} on average vs "
                   f"{base.means[measure]:.{digits}f}{suffix} at baseline ({change:+.{digits}f}{suffix}; "
                   f"threshold {threshold:.{digits}f}{suffix}). A change to review with the person. "
                   f"{SCREENING_DISCLAIMER}")
        flags.append(Flag(measure, label, direction, days[run[0][0]]["day"], len(run), base.means[measure],
                          recent, change, threshold, unit, message))
    if baseline == "first_days":
        reported = base_at_end or baseline_of([], "first_days", baseline_days)
    else:
        reported = bases.get(last) or baseline_of(_rolling_rows(days, last, baseline_days) if days else [],
                                                  "rolling", baseline_days)
    return Trend(person, reported, flags, days, flagged)


def days_without_data(days: List[Dict], night: str) -> int:
    """Calendar days from the last day with data up to `night` (0: data on that day)."""
    if not days:
        return -1
    return max(0, (_day(night) - _day(days[-1]["day"])).days)
