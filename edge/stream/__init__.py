"""Streaming inference: models advanced tick by tick with their state carried."""
from edge.stream.severity import (
    BAND_NAMES,
    SeverityEstimate,
    SeverityModel,
    SeverityStream,
    phq8_band,
)

__all__ = ["BAND_NAMES", "SeverityEstimate", "SeverityModel", "SeverityStream", "phq8_band"]
