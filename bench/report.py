"""Showing a result document: terminal table, Markdown, comparison of two runs, plot."""
from __future__ import annotations

from typing import Dict, List, Optional

from bench.stats import ratio_with_noise

LATENCY_COLUMNS = ("min", "p50", "p90", "p95", "p99", "max", "mean", "std")


def fmt_ms(value: Optional[float]) -> str:
    if value is None:
        return "-"
    if value < 1:
        return f"{value:.3f}"
    if value < 100:
        return f"{value:.2f}"
    return f"{value:.0f}"


def _num(value: Optional[float], spec: str) -> str:
    return "-" if value is None else format(value, spec)


def row_label(row: Dict) -> str:
    if row["role"] == "peer":
        return f"peer {row['model']} {row['backend']} t{row['threads']}"
    if row["role"] == "streaming":
        return f"{row['backend']} {row['precision']} {row['key'].rsplit('/', 1)[1]}"
    return f"{row['model']} {row['backend']} {row['precision']} t{row['threads']}"


def _quality(row: Dict) -> str:
    q = row.get("quality")
    if not q:
        return "-"
    if q["metric"] == "top1_agreement":
        return f"top1 {100 * q['value']:.1f}%"
    return f"err {q['value']:.3f}"


def _cells(row: Dict) -> List[str]:
    if "latency_ms" not in row:
        return [row_label(row), "failed"] + [""] * 16 + [row.get("error", "")]
    lat = row["latency_ms"]
    noise = row["rounds"]["noise_pct"]
    return ([row_label(row), str(lat["n"])] + [fmt_ms(lat[c]) for c in LATENCY_COLUMNS]
            + [_num(noise, ".1f"), _num(row.get("throughput_per_s"), ".0f"),
               _num(row.get("gflops_per_s"), ".2f"), fmt_ms(row.get("init_ms")), fmt_ms(row.get("first_ms")),
               _num(row.get("cpu_per_wall"), ".2f"), _num(row.get("rss_added_mb"), ".1f"), _quality(row),
               ",".join(f["code"] for f in row["flags"]) or "-"])


HEADER = (["row", "n"] + [f"{c}" for c in LATENCY_COLUMNS]
          + ["noise%", "runs/s", "GFLOP/s", "init", "first", "cpu/wall", "+MB", "quality", "flags"])


def _table(rows: List[List[str]], header: List[str]) -> List[str]:
    """Aligned plain-text lines: the first and the last two columns (words) left-aligned,
    numbers right-aligned."""
    widths = [max(len(r[i]) for r in rows + [header]) for i in range(len(header))]

    def line(cells: List[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 or i >= len(header) - 2 else c.rjust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    return [line(header), line(["-" * w for w in widths])] + [line(r) for r in rows]


def fingerprint_line(fp: Dict) -> str:
    packages = ", ".join(f"{k} {v}" for k, v in sorted(fp.get("packages", {}).items()))
    memory = f"{fp['memory_mb'] / 1024:.1f} GB" if fp.get("memory_mb") else "? GB"
    parts = [f"{fp['cpu_model']}", f"{fp['usable_cores']} of {fp['cores']} cores",
             f"governor {fp.get('governor') or '-'}", memory, fp["os"], f"Python {fp['python']}", packages]
    if fp.get("virtualized"):
        parts.insert(2, "virtual machine")
    if fp.get("jetson_power_mode"):
        parts.append("nvpmodel: " + " ".join(fp["jetson_power_mode"].split()))
    if fp.get("pi_throttled"):
        parts.append(fp["pi_throttled"])
    return "; ".join(parts)


def text(doc: Dict) -> str:
    """The terminal report: fingerprint, one table, peer ratios, streaming, flags."""
    out = [f"edge bench {doc['created_utc']}  (latencies in ms per {_units(doc)}; noise% = spread of "
           f"{doc['settings']['rounds']} interleaved rounds)",
           f"device: {fingerprint_line(doc['fingerprint'])}", ""]
    groups = (("models", "ours"), ("peer", "peer"), ("streaming (1 thread)", "streaming"))
    cells = []
    for title, role in groups:
        rows = [r for r in doc["rows"] if r["role"] == role]
        if rows:
            cells.append([f"[{title}]"] + [""] * (len(HEADER) - 1))
            cells.extend(_cells(r) for r in rows)
    if cells:
        out.extend(_table(cells, HEADER))
    out.extend(_peer_lines(doc))
    out.extend(_auto_lines(doc))
    out.extend(_streaming_lines(doc))
    if doc.get("pipeline"):
        from bench.pipeline import report_lines

        out.extend([""] + report_lines(doc["pipeline"]))
    if doc.get("layers"):
        from bench.layers import text_lines

        out.extend(text_lines(doc["layers"]))
    notes = _flag_lines(doc)
    if notes:
        out.extend([""] + notes)
    demo = any(r.get("demo_weights") for r in doc["rows"])
    if demo:
        out.extend(["", "lstm_moe: demo weights, not for screening (speed figures are still real)."])
    if doc.get("peak_rss_mb"):
        rows_note = "; +MB is what loading and first-running each row added" if doc["rows"] else ""
        out.append(f"peak RSS of the benchmark process: {doc['peak_rss_mb']:.0f} MB{rows_note}.")
    out.append(f"finished in {doc['wall_s']:.0f} s")
    return "\n".join(out)


def _units(doc: Dict) -> str:
    return "call (a face, or a tick)"


def _peer_lines(doc: Dict) -> List[str]:
    if not doc.get("peer_ratios"):
        return []
    out = ["", "peer vs ours (p50; > 1 means the peer is slower):"]
    for p in doc["peer_ratios"]:
        noise = "noise unknown" if p["noise_pct"] is None else f"noise +/-{p['noise_pct']:.1f}%"
        out.append(f"  t{p['threads']}: {p['peer']} {fmt_ms(p['peer_p50_ms'])} ms / {p['ours']} "
                   f"{fmt_ms(p['ours_p50_ms'])} ms = {p['ratio']:.2f}x ({noise}; ours {p['verdict']})")
    return out


def _auto_lines(doc: Dict) -> List[str]:
    auto = doc.get("auto_pick")
    if not auto:
        return []
    out = ["", f"precision: auto for {auto['profile']} ({auto['model']} {auto['backend']}, 1 thread): "
               f"{auto['file']} - {auto['reason']}"]
    if auto.get("time_ratio") is not None:
        verdict = "met" if auto["time_ratio"] <= auto["target_ratio"] else "NOT met"
        out.append(f"  p50 {fmt_ms(auto['ours_p50_ms'])} ms = {auto['time_ratio']:.2f}x the peer's "
                   f"{fmt_ms(auto['peer_p50_ms'])} ms (target <= {auto['target_ratio']}x: {verdict})")
    return out


def _streaming_lines(doc: Dict) -> List[str]:
    if not doc.get("streaming"):
        return []
    out = ["", "streaming vs window (one tick with carried state vs re-running the last "
               f"{doc['settings']['window_s']:g} s from zero):"]
    for s in doc["streaming"]:
        out.append(f"  {s['backend']} {s['precision']}: tick {fmt_ms(s['tick_p50_ms'])} ms, window "
                   f"{fmt_ms(s['window_p50_ms'])} ms = {s['window_over_tick']:.0f}x; at 10 ticks/s "
                   f"{s['tick_core_pct_at_10hz']:.2f}% vs {s['window_core_pct_at_10hz']:.1f}% of a core")
    return out


def _flag_lines(doc: Dict) -> List[str]:
    out = []
    for flag in doc.get("flags", []):
        out.append(f"RUN FLAG {flag['code']}: {flag['detail']}")
    for row in doc["rows"]:
        for flag in row.get("flags", []):
            out.append(f"flag {row_label(row)}: {flag['code']}: {flag['detail']}")
    return out


def markdown(doc: Dict) -> str:
    """A Markdown table with the fingerprint and date, for a README or an issue."""
    fp = doc["fingerprint"]
    out = [f"Measured {doc['created_utc']} with `{' '.join(doc['command'])}`", "",
           f"Device: {fingerprint_line(fp)}", "",
           "Latency in ms per call (one face for mini_xception, one 100 ms tick for lstm_moe); "
           f"noise% is the spread of {doc['settings']['rounds']} interleaved rounds.", ""]
    rows = [_cells(r) for r in doc["rows"]]
    if rows:
        out.append("| " + " | ".join(HEADER) + " |")
        out.append("|" + "|".join("---" if i == 0 else "---:" for i in range(len(HEADER))) + "|")
        out.extend("| " + " | ".join(c.replace("|", "/") for c in r) + " |" for r in rows)
    if doc.get("pipeline"):
        out.extend(_pipeline_markdown(doc["pipeline"]))
    if doc.get("layers"):
        from bench.layers import text_lines

        out.extend(["", "```"] + text_lines(doc["layers"])[1:] + ["```"])
    extra = _peer_lines(doc) + _auto_lines(doc) + _streaming_lines(doc) + _flag_lines(doc)
    if extra:
        out.append("")
        out.extend(line.strip() and f"- {line.strip()}" for line in extra if line.strip())
    return "\n".join(out)


def _pipeline_markdown(p: Dict) -> List[str]:
    """Ours vs fer's per-frame pipeline as a Markdown table, then the targets."""
    from bench.pipeline import target_text

    info = p["video_info"]
    loops = f" looped {p['loops']}x" if p["loops"] > 1 else ""
    out = ["", f"Pipeline over `{p['video']}`{loops} ({info['width']}x{info['height']} {info['fps']:g} fps, "
               f"{p['media_s']:.1f} s) with {('`' + p['audio'] + '`') if p['audio'] else 'no audio'}, "
               f"{p['rounds']} round(s) each, alternately:", "",
           "| pipeline | frames decoded | analysed | frames/s | x real time | noise% | peak RSS MB | "
           "first result s |",
           "|---|---:|---:|---:|---:|---:|---:|---:|"]
    ours = p["ours"]
    out.append(f"| ours: `edge run --fast` | {ours['frames_in']} | {ours['frames_analysed']} | "
               f"{_num(ours['frames_per_s'], '.0f')} | {_num(ours['realtime_factor'], '.1f')} | "
               f"{_num(ours['noise_pct'], '.1f')} | {_num(ours['peak_rss_mb'], '.0f')} | "
               f"{_num(ours['first_result_s'], '.2f')} |")
    peer = p.get("peer")
    if peer:
        out.append(f"| fer per-frame (Haar every frame + TFLite) | {peer['frames']} | {peer['frames']} | "
                   f"{_num(peer['frames_per_s'], '.1f')} | {_num(peer['realtime_factor'], '.2f')} | "
                   f"{_num(peer['noise_pct'], '.1f')} | - | - |")
        r = p["fps_ratio"]
        noise = "noise unknown with 1 round" if r["noise_pct"] is None else \
            f"noise +/-{r['noise_pct']:.1f}%; {r['verdict']}"
        out += ["", f"Ours / fer frames per second: **{r['ratio']:.1f}x** ({noise})."]
    out += ["", "Issue 5 targets: " + "; ".join(target_text(t) for t in p["targets"]) + "."]
    return out


# ---- comparing two runs --------------------------------------------------------------

_FINGERPRINT_KEYS = ("cpu_model", "usable_cores", "governor", "os", "python", "packages",
                     "jetson_power_mode")


def compare(a: Dict, b: Dict, name_a: str = "A", name_b: str = "B") -> str:
    """B/A p50 ratio per row present in both, with the rounds' noise and a verdict."""
    out = [f"compare B={name_b} against A={name_a} (p50 per row; B/A < 1 means B is faster)"]
    for key in _FINGERPRINT_KEYS:
        va, vb = a["fingerprint"].get(key), b["fingerprint"].get(key)
        if va != vb:
            out.append(f"  differs: {key}: A {va} | B {vb}")
    rows_a = {r["key"]: r for r in a["rows"] if "latency_ms" in r}
    rows_b = {r["key"]: r for r in b["rows"] if "latency_ms" in r}
    cells = []
    for key, ra in rows_a.items():
        rb = rows_b.get(key)
        if rb is None:
            continue
        if ra.get("sha256") != rb.get("sha256"):
            key = key + " (file changed)"
        pa, pb = ra["latency_ms"]["p50"], rb["latency_ms"]["p50"]
        r = ratio_with_noise(pa, pb, ra["rounds"]["noise_pct"], rb["rounds"]["noise_pct"])
        verdict = {"faster": "B faster", "slower": "B slower"}.get(r["verdict"], r["verdict"])
        flags = sorted({f["code"] for f in ra["flags"] + rb["flags"]})
        cells.append([key, fmt_ms(pa), fmt_ms(pb), f"{r['ratio']:.3f}",
                      "-" if r["noise_pct"] is None else f"{r['noise_pct']:.1f}", verdict,
                      ",".join(flags) or "-"])
    only = sorted(set(rows_a) ^ set(rows_b))
    if cells:
        out.extend(_table(cells, ["row", "A p50", "B p50", "B/A", "noise%", "verdict", "flags"]))
    else:
        out.append("no row is in both files")
    if only:
        out.append("only in one file: " + ", ".join(only))
    out.append("verdict: a change is called real when |log(B/A)| is more than twice the noise "
               "(round noise of A and B added in quadrature); flagged rows deserve a re-run.")
    return "\n".join(out)


# ---- plot ----------------------------------------------------------------------------

def plot(doc: Dict, path: str) -> None:
    """Box plots of every row's latency (box p25-p75, whiskers p1-p99) on a log axis,
    drawn from the stored quantiles. Needs matplotlib (imported here only)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in doc["rows"] if r.get("quantiles_ms")]
    boxes = []
    for r in rows:
        q = r["quantiles_ms"]
        boxes.append({"label": row_label(r), "med": q[50], "q1": q[25], "q3": q[75], "whislo": q[1],
                      "whishi": q[99], "fliers": [q[0], q[100]], "mean": r["latency_ms"]["mean"]})
    fig, ax = plt.subplots(figsize=(10, 0.35 * len(boxes) + 1.5))
    ax.bxp(boxes, vert=False, showmeans=True, showfliers=True)
    ax.set_xscale("log")
    ax.invert_yaxis()
    ax.set_xlabel("latency per call, ms (box p25-p75, whiskers p1-p99, dots min/max)")
    ax.set_title(f"{doc['fingerprint']['cpu_model']}  {doc['created_utc']}", fontsize=9)
    ax.grid(True, axis="x", which="both", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
