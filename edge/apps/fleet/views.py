"""What the dashboard's pages show, read from the fleet database (plain data for the templates).

People are listed by opaque id (`gateway / person`, as the gateways send them), those with open
flags that nobody has acknowledged first, then other open flags, then the rest; a page at a time.
A person's page draws the last 30 or 90 days of each measure against the personal baseline band:
the baseline mean (from the gateway's last message) plus or minus the threshold of the flag rule
(edge.rules.flags.threshold) over the days of the baseline period that the care team holds. The
PHQ-8 margin is the open flag's threshold when there is one, else the gateway's default (3 points).
"""
from __future__ import annotations

import json
import math
import time
from datetime import date, timedelta
from typing import Dict, List, Optional, Tuple

from edge.apps.fleet.store import MEASURES, FleetStore
from edge.rules import flags as rule

LABELS = {"phq8_mu": ("PHQ-8 estimate", "points"), "pause_ratio": ("pause ratio", ""),
          "speaking_rate": ("speaking-rate proxy", "voiced segments/s"), "f0_mean_st": ("pitch (F0) mean", "st"),
          "f0_var": ("pitch variability", "stddev/mean"), "loudness": ("loudness", ""), "jitter": ("jitter", ""),
          "shimmer_db": ("shimmer", "dB")}
DEFAULT_PHQ8_MARGIN = 3.0  # nightly.flag_margin's default


def _utc(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


class Views:
    def __init__(self, store: FleetStore, silent_hours: float, per_page: int):
        import sqlalchemy as sa

        self.sa = sa
        self.store = store
        self.t = store.t
        self.silent_hours = silent_hours
        self.per_page = per_page

    # ----- the overview ---------------------------------------------------------------------
    def gateways(self, now: float, only_alerts: bool = False) -> List[Dict]:
        sa, g = self.sa, self.t["gateways"]
        silent_before = _utc(now - self.silent_hours * 3600)
        query = sa.select(g).where(g.c.kind == "gateway").order_by(g.c.last_seen_utc, g.c.gateway)
        if only_alerts:
            query = query.where(sa.or_(g.c.last_seen_utc < silent_before, g.c.status == "attention"))
        with self.store.engine.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(query)]
        for row in rows:
            row["silent"] = row["last_seen_utc"] < silent_before
            row["silent_hours"] = round((now - _epoch(row["last_seen_utc"])) / 3600.0, 1)
        return rows

    def counts(self, now: float) -> Dict[str, int]:
        sa, g, f, p = self.sa, self.t["gateways"], self.t["flags"], self.t["people"]
        silent_before = _utc(now - self.silent_hours * 3600)
        with self.store.engine.connect() as conn:
            one = conn.execute(sa.select(
                sa.select(sa.func.count()).select_from(p).scalar_subquery(),
                sa.select(sa.func.count()).select_from(g).where(g.c.kind == "gateway").scalar_subquery(),
                sa.select(sa.func.count()).select_from(g).where(g.c.kind == "gateway",
                                                                 g.c.last_seen_utc < silent_before).scalar_subquery(),
                sa.select(sa.func.count()).select_from(f).where(f.c.open.is_(True)).scalar_subquery(),
                sa.select(sa.func.count()).select_from(f).where(f.c.open.is_(True),
                                                                 f.c.acked_utc.is_(None)).scalar_subquery(),
                sa.select(sa.func.count()).select_from(self.t["dead"]).scalar_subquery())).one()
        return dict(zip(("people", "gateways", "silent", "open_flags", "unacked", "dead_letters"), one))

    def people(self, page: int) -> List[Dict]:
        """One page of people: unacknowledged open flags first, then open flags, then by id."""
        sa, p, f = self.sa, self.t["people"], self.t["flags"]
        unacked = (sa.select(f.c.gateway, f.c.person, sa.func.count().label("n"))
                   .where(f.c.open.is_(True), f.c.acked_utc.is_(None)).group_by(f.c.gateway, f.c.person).subquery())
        n = sa.func.coalesce(unacked.c.n, 0).label("unacked")
        query = (sa.select(p.c.gateway, p.c.person, p.c.night, p.c.open_flags, p.c.days_without_data,
                           p.c.days_with_data, p.c.demo_weights, p.c.last_day, n)
                 .select_from(p.outerjoin(unacked, sa.and_(unacked.c.gateway == p.c.gateway,
                                                           unacked.c.person == p.c.person)))
                 .order_by(n.desc(), p.c.open_flags.desc(), p.c.gateway, p.c.person)
                 .limit(self.per_page).offset(max(0, page) * self.per_page))
        with self.store.engine.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(query)]
            flagged = [(r["gateway"], r["person"]) for r in rows if r["open_flags"]]
            by_person: Dict[Tuple[str, str], List[Dict]] = {}
            if flagged:
                q = sa.select(f).where(f.c.open.is_(True), sa.tuple_(f.c.gateway, f.c.person).in_(flagged))
                for r in conn.execute(q.order_by(f.c.since)):
                    by_person.setdefault((r.gateway, r.person), []).append(dict(r._mapping))
        for row in rows:
            row["flags"] = by_person.get((row["gateway"], row["person"]), [])
        return rows

    # ----- a person ---------------------------------------------------------------------------
    def person(self, gateway: str, person: str, days: int) -> Optional[Dict]:
        sa, p, f, d = self.sa, self.t["people"], self.t["flags"], self.t["person_days"]
        with self.store.engine.connect() as conn:
            row = conn.execute(sa.select(p).where(p.c.gateway == gateway, p.c.person == person)).first()
            if row is None:
                return None
            info = dict(row._mapping)
            info["baseline"] = json.loads(info.pop("baseline_json") or "{}")
            flags = [dict(r._mapping) for r in conn.execute(
                sa.select(f).where(f.c.gateway == gateway, f.c.person == person)
                .order_by(f.c.open.desc(), f.c.acked_utc.is_(None).desc(), f.c.since.desc()).limit(50))]
            end = date.fromisoformat(info["night"])
            start = (end - timedelta(days=days)).isoformat()
            base = info["baseline"]
            since = min(start, base.get("first_day") or start)
            rows = [dict(r._mapping) for r in conn.execute(
                sa.select(d).where(d.c.gateway == gateway, d.c.person == person, d.c.day >= since)
                .order_by(d.c.day))]
        info["flags"] = flags
        info["window_days"] = days
        info["charts"] = [chart(m, rows, base, flags, start, end.isoformat()) for m in MEASURES]
        return info

    def sites(self) -> List[Dict]:
        sa, s = self.sa, self.t["sessions"]
        query = (sa.select(s.c.site, sa.func.count().label("sessions"), sa.func.max(s.c.started_utc).label("last"))
                 .group_by(s.c.site).order_by(s.c.site))
        with self.store.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(query)]

    def sessions(self, site: str, limit: int = 100) -> List[Dict]:
        sa, s = self.sa, self.t["sessions"]
        with self.store.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(
                sa.select(s).where(s.c.site == site).order_by(s.c.started_utc.desc()).limit(limit))]

    def audit(self, limit: int = 200) -> List[Dict]:
        a = self.t["audit"]
        with self.store.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(self.sa.select(a).order_by(a.c.id.desc()).limit(limit))]

    def dead_letters(self, limit: int = 100) -> List[Dict]:
        t = self.t["dead"]
        with self.store.engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(
                self.sa.select(t).order_by(t.c.received_utc.desc()).limit(limit))]

    # ----- acknowledging ----------------------------------------------------------------------
    def acknowledge(self, flag_id: int, user: str, note: str) -> Optional[Dict]:
        """Mark a flag seen with a note; the audit log keeps who, when and what. None: no such flag."""
        sa, f = self.sa, self.t["flags"]
        now = _utc(time.time())
        with self.store.engine.begin() as conn:
            row = conn.execute(sa.select(f).where(f.c.id == flag_id)).first()
            if row is None:
                return None
            conn.execute(f.update().where(f.c.id == flag_id).values(acked_by=user, acked_utc=now, ack_note=note))
            self.store.add_audit(conn, user, "acknowledge", f"{row.gateway}/{row.person} {row.measure} "
                                 f"since {row.since}", note)
            return dict(row._mapping)


def _epoch(utc: str) -> float:
    import calendar

    return float(calendar.timegm(time.strptime(utc, "%Y-%m-%dT%H:%M:%SZ")))


def band(measure: str, rows: List[Dict], base: Dict, flags: List[Dict]) -> Optional[Tuple[float, float, float]]:
    """(mean, low, high) of the personal baseline band, or None while the baseline forms."""
    mean = base.get("phq8_mu") if measure == "phq8_mu" else (base.get("voice") or {}).get(measure)
    if mean is None or not base.get("ready"):
        return None
    first, last = base.get("first_day"), base.get("last_day")
    values = [r[measure] for r in rows if r.get(measure) is not None and first and last and first <= r["day"] <= last]
    sd = None
    if len(values) > 1:
        m = sum(values) / len(values)
        sd = math.sqrt(sum((v - m) ** 2 for v in values) / (len(values) - 1))
    margin = next((fl["threshold"] for fl in flags if fl["measure"] == measure and fl["open"]), DEFAULT_PHQ8_MARGIN)
    limit = rule.threshold(measure, mean, sd, margin)
    # The PHQ-8 rule looks upwards only (edge.rules.flags.beyond): any value below the top edge is inside.
    low = mean - limit if measure != "phq8_mu" else 0.0
    return mean, low, mean + limit


def chart(measure: str, rows: List[Dict], base: Dict, flags: List[Dict], start: str, end: str) -> Dict:
    """An inline SVG's numbers: points per day with data, gaps where there is none, the band."""
    width, height, pad = 640.0, 120.0, 6.0
    days = (date.fromisoformat(end) - date.fromisoformat(start)).days or 1
    shown = [r for r in rows if r["day"] > start and r.get(measure) is not None]
    edges = band(measure, rows, base, flags)
    values = [r[measure] for r in shown] + (list(edges[1:]) if edges else [])
    label, unit = LABELS[measure]
    out: Dict = {"measure": measure, "label": label, "unit": unit, "width": width, "height": height,
                 "points": [], "segments": [], "band": None, "mean_y": None, "last": None, "empty": not shown}
    if not values:
        return out
    low, high = min(values), max(values)
    if high - low < 1e-9:
        low, high = low - 1.0, high + 1.0
    span = high - low

    def x_of(day: str) -> float:
        return round(pad + (width - 2 * pad) * (date.fromisoformat(day) - date.fromisoformat(start)).days / days, 1)

    def y_of(value: float) -> float:
        return round(height - pad - (height - 2 * pad) * (value - low) / span, 1)

    segment: List[str] = []
    previous: Optional[date] = None
    for r in shown:
        day = date.fromisoformat(r["day"])
        if previous is not None and (day - previous).days > 1 and segment:
            out["segments"].append(" ".join(segment))  # a day without data breaks the line
            segment = []
        segment.append(f"{x_of(r['day'])},{y_of(r[measure])}")
        outside = edges is not None and not edges[1] <= r[measure] <= edges[2]
        out["points"].append({"x": x_of(r["day"]), "y": y_of(r[measure]), "day": r["day"],
                              "value": round(r[measure], 3), "outside": outside})
        previous = day
    if segment:
        out["segments"].append(" ".join(segment))
    if edges is not None:
        mean, lo, hi = edges
        out["band"] = {"y": y_of(hi), "h": max(1.0, round(y_of(lo) - y_of(hi), 1)), "low": round(lo, 3),
                       "high": round(hi, 3), "mean": round(mean, 3)}
        out["mean_y"] = y_of(mean)
    out["last"] = round(shown[-1][measure], 3) if shown else None
    return out
