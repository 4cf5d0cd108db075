"""The screening engine: models loaded once, then sessions in push or source mode.

    from edge import Screener, ScreenerOptions
    screener = Screener(ScreenerOptions.from_profile("firmware_configs/desktop.yaml"))

See edge/engine/screener.py for the tour; results are typed (edge/engine/results.py).
"""
from edge.engine.memory import release_memory
from edge.engine.outputs import SessionWriter, check_outputs
from edge.engine.results import (
    DataQuality,
    ModelInfo,
    PHQ8Result,
    RunningEstimate,
    SessionMedia,
    SessionResult,
    StopKind,
    StopReason,
    Tick,
    VoteResult,
)
from edge.engine.screener import Screener, ScreenerOptions
from edge.engine.session import Session
from edge.engine.sources import SourceProbe, SourceRun, StreamProbe, probe_sources

__all__ = ["DataQuality", "ModelInfo", "PHQ8Result", "RunningEstimate", "Screener", "ScreenerOptions", "Session",
           "SessionMedia", "SessionResult", "SessionWriter", "SourceProbe", "SourceRun", "StopKind", "StopReason",
           "StreamProbe", "Tick", "VoteResult", "check_outputs", "probe_sources", "release_memory"]
