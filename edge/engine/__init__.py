"""The screening engine: models loaded once, then sessions in push or source mode.

    from edge import Screener
    screener = Screener.from_profile("firmware_configs/desktop.yaml")

See edge/engine/screener.py for the tour; results are typed (edge/engine/results.py).
"""
from edge.engine.results import (
    DataQuality,
    ModelInfo,
    PHQ8Result,
    RunningEstimate,
    SessionResult,
    Tick,
    VoteResult,
)
from edge.engine.screener import Screener, ScreenerOptions
from edge.engine.session import Session
from edge.engine.sources import SourceRun

__all__ = ["DataQuality", "ModelInfo", "PHQ8Result", "RunningEstimate", "Screener", "ScreenerOptions", "Session",
           "SessionResult", "SourceRun", "Tick", "VoteResult"]
