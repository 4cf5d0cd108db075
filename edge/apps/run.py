"""`edge run`: a screening session from a camera/microphone or files.

Exit codes: 0 the session ran to its end (sources ended or --duration reached) and was
saved; 130 interrupted (Ctrl-C, SIGTERM); 3 ended early for another reason (the sources
stalled: no data for 10 s) -- in both cases the summary and the database row are
still written, with `complete: false` and the `stop_reason`; 4 the session ran but its
summary or database row could not be saved (the output says which, and where the rest
went); 2 a user error.

Built on the public engine (edge.engine): the Screener loads the models, a SourceRun
feeds the session from the sources, a SessionWriter streams and saves the outputs.

Sources: when the command line names any source (--video/--camera/--gst/--picamera2,
--audio/--mic), only the named ones are used; otherwise the config's
`video.source` / `audio.source`.
"""
from __future__ import annotations

import json
import signal
import sys
from typing import Dict, Optional, Tuple

EXIT_INCOMPLETE = 3  # ended early, not by the user (see the module docstring)
EXIT_NOT_SAVED = 4  # the session's summary or row could not be written
EXIT_INTERRUPTED = 130  # Ctrl-C / SIGTERM, the shell's code for SIGINT


def choose_sources(args, config) -> Tuple[Optional[str], Optional[str]]:
    video = None
    if args.video:
        video = args.video
    elif args.camera is not None:
        video = f"camera:{args.camera}"
    elif args.gst:
        video = "gst:" + args.gst
    elif args.picamera2:
        video = "picamera2"
    audio = None
    if args.audio:
        audio = args.audio
    elif args.mic is not None:
        audio = "mic" if args.mic == "default" else f"mic:{args.mic}"
    if video is None and audio is None:
        return config.video.source, config.audio.source
    return video, audio


def _fmt_stage(stats: Dict) -> str:
    return f"p50 {stats['p50']:.2f} / p95 {stats['p95']:.2f} / p99 {stats['p99']:.2f} ms (n={stats['n']})"


def format_summary(summary: Dict) -> str:
    s = summary["screening"]
    not_saved = f" -- NOT SAVED: {', '.join(summary['not_saved'])} lost" if summary.get("not_saved") else ""
    lines = [f"session {summary['session_id']} ({summary['profile']}): {summary['duration_s']} s, "
             f"{'complete' if summary['complete'] else 'INCOMPLETE: ' + summary['stop_reason']}{not_saved}",
             f"  video: {summary['sources']['video']}   audio: {summary['sources']['audio']}",
             f"  face in {s['face_share']:.0%} of the session's analysis frames; "
             f"voice in {s['voiced_share']:.0%} of audio frames"]
    vote = s["emotion_vote"]
    if vote["status"] == "ok":
        provisional = (f" (PROVISIONAL: {vote['frames_used']} of {vote['frames_wanted']} face frames)"
                       if vote.get("provisional") else "")
        # The paper's advice message stays in the stored summary (research reads it); printed
        # alone it can read as an all-clear, so the console gives the level and says what it is.
        lines.append(f"emotion vote: {vote['pattern']} -> {vote['level']}{provisional} (the facial-emotion "
                     "paper's level, a research reading: not advice; anyone worried should talk to a professional)")
    else:
        lines.append(f"emotion vote: abstained ({vote['reason']})")
    phq8 = s["phq8"]
    note = f"  [{phq8['note']}]" if "note" in phq8 else ""
    if phq8["status"] == "ok":
        interval = phq8.get("interval") or []
        span = f", interval {interval[0]:.1f}-{interval[1]:.1f}" if len(interval) == 2 else ""
        source = f" [{phq8['input']}]" if phq8.get("input") else ""
        lines.append(f"PHQ-8 estimate: {phq8['mu']:.1f} +/- {phq8['sigma']:.1f}{span} ({phq8['band']}){source}{note}")
    else:
        lines.append(f"PHQ-8 estimate: abstained ({phq8['reason']}){note}")
    for key in ("gaps", "notes", "warnings"):
        if summary.get(key):
            lines.append(f"{key}: {summary[key]}")
    t = summary["telemetry"]
    c = t["counters"]
    lines.append(f"telemetry: {t['media_s']:.1f} s of media in {t['wall_s']:.2f} s "
                 f"({t['realtime_factor']:.1f}x real time), first result after {t['first_result_s']} s")
    lines.append(f"  frames in {c.get('frames_in', 0)}, analysed {c.get('frames_analysed', 0)}, "
                 f"with face {c.get('frames_with_face', 0)}, dropped {c.get('frames_dropped', 0)}; "
                 f"detections {c.get('face_detections', 0)}, tracked {c.get('face_track_reuses', 0)}")
    if "audio_overflow_samples" in c:
        lines.append(f"  audio samples {c['audio_samples_in']}, overflow {c['audio_overflow_samples']}, "
                     f"gap {c['audio_gap_samples']}")
    for name, stats in sorted(t["stages_ms"].items()):
        if stats.get("n"):
            lines.append(f"  {name[:-3] if name.endswith('_ms') else name:<18} {_fmt_stage(stats)}")
    if t["frame_age_ms"].get("n"):
        lines.append(f"  frame age at inference {_fmt_stage(t['frame_age_ms'])}")
    lines.append(f"  {t['flops_per_s'] / 1e6:.1f} MFLOP/s executed, CPU share {t['cpu_share']:.2f}, "
                 f"peak RSS {t['peak_rss_mb']} MB")
    for key in ("summary_file", "database", "features_file"):
        if summary.get(key):
            lines.append(f"{key.replace('_', ' ')}: {summary[key]}")
    lines.append(summary["notice"])
    return "\n".join(lines)


def _where_the_rest_went(summary: Dict) -> str:
    kept = [f"{key.replace('_', ' ')} {summary[key]}" for key in ("summary_file", "database", "features_file")
            if summary.get(key)]
    if kept:
        return "saved: " + ", ".join(kept)
    return "nothing was written; the summary printed above is all that is left"


class StopSignals:
    """SIGINT and SIGTERM end the session once: the first raises KeyboardInterrupt (the
    run keeps what it had), later ones while the session closes and saves are noted and
    ignored, so a second Ctrl-C cannot lose the session. Main thread only."""

    def __init__(self) -> None:
        self.received = 0
        self.closing = False
        self._previous = {}

    def _handle(self, signum, frame) -> None:
        self.received += 1
        if self.received == 1 and not self.closing:
            raise KeyboardInterrupt

    def __enter__(self) -> StopSignals:
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: leave the defaults
                pass
        return self

    def __exit__(self, *exc) -> None:
        for sig, previous in self._previous.items():
            # After a stop request the process is on its way out: a late signal must not raise
            # in the interpreter's teardown (a traceback from a finaliser), so it is ignored.
            signal.signal(sig, signal.SIG_IGN if self.received else previous)


def run(args) -> int:
    from edge import Screener, ScreenerOptions, SessionWriter, StopKind, check_outputs

    options = ScreenerOptions.from_profile(args.config, args.models_dir, getattr(args, "detector", None))
    config = options.config
    video, audio = choose_sources(args, config)
    check_outputs(config.output, args.save_features)  # before the models load: fail fast
    with StopSignals() as signals:  # held until the summary is printed: a late signal cannot cut it
        screener = Screener(options)
        source_run = screener.run(video, audio, fast=args.fast, duration_s=args.duration)
        tel = config.telemetry
        metrics = None if tel.http_port is None else screener.serve_metrics(tel.http_host, tel.http_port, tel.token,
                                                                            tel.server_names)
        try:
            writer = SessionWriter(config.output, source_run.session_id, args.save_features,
                                   config.models.severity.context)
        except BaseException:  # outputs that cannot be opened (a full disk): nothing ran, nothing is kept
            source_run.close("its outputs could not be opened")
            if metrics is not None:
                metrics.close()
            raise
        ticks = iter(source_run)
        try:
            for tick in ticks:
                writer.tick(tick)
                if args.json:
                    print(json.dumps(tick.to_dict()), flush=True)
        except KeyboardInterrupt:
            pass  # the signal landed between two steps (a tick being written or printed): end it below
        finally:
            signals.closing = True  # from here on a signal cannot cut the saving short
            if source_run.result is None:  # the session was left between two ticks: finish it as interrupted
                source_run.stop("interrupted", kind=StopKind.INTERRUPTED)
                ticks.close()
            if metrics is not None:
                metrics.close()
            result = source_run.result
            if result is not None:
                if signals.received > 1:
                    result.warnings.append(f"{signals.received - 1} more stop signal(s) ignored while the "
                                           "session closed")
                lost = writer.close(result)
        if result is None:  # interrupted before the session started: nothing to keep
            raise KeyboardInterrupt
        summary = result.to_dict()
        if lost:
            summary["not_saved"] = lost  # the headline and the JSON never read as a saved session
        if args.json:
            print(json.dumps({"summary": summary}), flush=True)
        else:
            print(format_summary(summary))
        sys.stdout.flush()
    if lost:
        print(f"edge: error: session {result.session_id} NOT saved: {', '.join(lost)} lost "
              f"({'; '.join(w for w in result.warnings if 'NOT saved' in w)}); {_where_the_rest_went(summary)}",
              file=sys.stderr)
        return EXIT_NOT_SAVED
    if result.complete:
        return 0
    return EXIT_INTERRUPTED if result.stop_reason.kind is StopKind.INTERRUPTED else EXIT_INCOMPLETE
