"""Edge runtime of the depression-screening package (device side: no torch).

A screening aid, not a diagnosis.
"""
__version__ = "0.1.0"

SCREENING_DISCLAIMER = "Screening aid only, not a diagnosis."
DEMO_WEIGHTS_NOTICE = "demo weights, not for screening"
